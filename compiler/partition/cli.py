"""``cimforge partition MODEL --accelerators N --batch B --mode training|inference``.

Prints the chosen strategy's per-layer table and the totals of every strategy, and writes a markdown report with
a plot (``--report``, default ``build/partition/<model>_<mode>.md``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cimforge.errors import int_at_least, positive_float

from .dataflow import PartitionError

__all__ = ["add_arguments", "run", "MAX_ACCELERATORS", "MAX_BATCH"]

#: Largest training array: the hierarchy of 2^H accelerators (the search is exponential in nothing else, but
#: an array is a tuple of throughputs: 2^40 of them is a MemoryError, not a plan).
MAX_ACCELERATORS = 1024
#: Largest batch either mode accepts (costs are products of it; larger says nothing new and overflows int64
#: position counts on big models).
MAX_BATCH = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="ONNX file, or a name: alexnet, vgg19, resnet50, squeezenet, inception_v1, "
                                      "inception_v2, densenet121, shufflenet, zfnet512, digits, digits_resnet, "
                                      "accpar_alexnet, accpar_resnet50")
    parser.add_argument("--mode", choices=("training", "inference"), default="training")
    parser.add_argument("--accelerators", "-n", type=int_at_least(1), default=None,
                        help="training: accelerators, a power of two (default 16); inference: macros "
                             "(default: the preset's n_macros)")
    parser.add_argument("--batch", "-b", type=int_at_least(1), default=None,
                        help=f"batch, 1..{MAX_BATCH} (default 512 training, 1 inference)")
    parser.add_argument("--strategy", default=None,
                        help="strategy to detail: training dp|mp|tp|owt|hypar|accpar (default accpar); "
                             "inference search|dp|mp (default search)")
    parser.add_argument("--search", choices=("greedy", "joint"), default="greedy",
                        help="training: level-by-level DP (the papers) or one DP over all levels (small H)")
    parser.add_argument("--throughputs", default=None,
                        help="heterogeneous array: COUNTxTHROUGHPUT,... (e.g. 8x1,8x2) or T,T,...")
    parser.add_argument("--bytes-per-element", type=positive_float(64), default=2.0,
                        help="training tensors, a number in (0, 64] (default 2: bf16)")
    parser.add_argument("--preset", default=None, help="inference: fabric preset (tiny, default, isscc22; default: "
                                                       "default)")
    parser.add_argument("--config", default=None, help="inference: fabric configuration TOML (overrides --preset)")
    parser.add_argument("--scale-to-fabric", action="store_true",
                        help="inference: divide the model's channels until its weights fit the fabric")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=1x3x224x224",
                        help="impose a graph input's shape before ONNX shape inference (repeatable)")
    parser.add_argument("--report", default=None, help="markdown report path (a PNG is written beside it)")
    parser.add_argument("--no-report", action="store_true", help="print only")


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except PartitionError as e:
        print(f"cimforge partition: error: {e}", file=sys.stderr)
        return 2


def _parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    name, _, dims = text.rpartition("=")
    try:
        shape = tuple(int(x, 10) for x in dims.lower().split("x"))
    except ValueError:
        shape = ()
    if not name or not shape or any(d < 1 or d > 1 << 20 for d in shape):
        raise PartitionError(f"--input-shape {text!r}: allowed NAME=DxDx...xD with each D in 1..{1 << 20} "
                             "(e.g. data_0=1x3x224x224)")
    return name, shape


def _run(args: argparse.Namespace) -> int:
    from .dataflow import dataflow
    from .report import format_table
    from .zoo import load_model

    shapes = dict(_parse_shape(s) for s in args.input_shape)
    if args.batch is not None and args.batch > MAX_BATCH:
        raise PartitionError(f"--batch {args.batch}: allowed 1..{MAX_BATCH}")
    if args.mode == "training" and args.accelerators is not None:
        n = args.accelerators
        if n > MAX_ACCELERATORS or n & (n - 1):
            raise PartitionError(f"--accelerators {n}: training needs a power of two, 1..{MAX_ACCELERATORS}")
    cfg = _inference_config(args) if args.mode == "inference" else None
    report = None if args.no_report else Path(args.report or f"build/partition/{Path(args.model).stem}_{args.mode}.md")
    if report is not None:
        from cimforge.outputs import check_output_dir
        if report.is_dir():  # the option takes the report file's path (a PNG is written beside it)
            raise PartitionError(f"--report {str(report)!r}: is a directory; allowed a markdown file path "
                                 f"(e.g. {str(report / 'partition.md')!r})")
        check_output_dir("--report (its folder)", report.parent)
    t0 = time.perf_counter()
    net = load_model(args.model, shapes or None)
    flow = dataflow(net)
    t_load = time.perf_counter() - t0
    print(f"model {flow.name}: {len(flow.weighted)} weighted layers, {len(flow.carried)} carried at zero cost, "
          f"{len(flow.edges)} edges ({sum(e.kind == 'block' for e in flow.edges)} shortcut); loaded in {t_load:.2f} s")
    if args.mode == "training":
        return _training(args, net, report, format_table)
    return _inference(args, net, cfg, report, format_table)


def _training(args, net, report, format_table) -> int:
    from .report import strategy_rows, training_rows, write_training_report
    from .training import STRATEGIES, Accelerators, plan_training

    n = args.accelerators or 16
    acc = Accelerators.parse(args.throughputs, n) if args.throughputs else Accelerators.homogeneous(n)
    batch = args.batch or 512
    chosen = args.strategy or "accpar"
    if chosen not in STRATEGIES:
        raise PartitionError(f"strategy {chosen!r}: allowed {', '.join(STRATEGIES)}")
    names = list(dict.fromkeys(["dp", "mp", "owt", "hypar", "accpar", chosen]))
    plans, times = {}, {}
    for s in names:
        t = time.perf_counter()
        plans[s] = plan_training(net, acc, batch, s, args.search)
        times[s] = time.perf_counter() - t
    print(f"{acc.n} accelerators ({acc.levels} levels), batch {batch}, search {args.search}; "
          f"search time {chosen}: {times[chosen]:.3f} s")
    print(f"\n{chosen}: per layer (types 1 level per column: I batch, II input ch, III output ch; Mel = 1e6 elements)")
    print(format_table(*training_rows(plans[chosen])))
    print("\nstrategies (comm = sum over levels of one side's traffic; x pairs = weighted by 2^h pairs)")
    print(format_table(*strategy_rows(plans, args.bytes_per_element)))
    if not acc.homogeneous_array:
        p = plans[chosen]
        print(f"\nheterogeneous: compute time balanced {p.compute_time():.4g}, even splits {p.naive_compute_time():.4g}"
              " (MACs / throughput units)")
    if report:
        print(f"\nreport: {write_training_report(plans, chosen, report, args.bytes_per_element)}")
    return 0


def _inference_config(args):
    """The fabric of ``--mode inference``, checked before the model is loaded: a preset or file the compiler
    accepts (``compiler.compile.check_config``: int8 needs max_wb = max_ab = 8), with ``-n`` macros."""
    from dataclasses import replace

    from cimforge.cli import config_from_options
    from cimforge.compiler.compile import check_config

    cfg = config_from_options(args)
    if args.accelerators:
        cfg = replace(cfg, fabric=replace(cfg.fabric, n_macros=args.accelerators))
    check_config(cfg)
    return cfg


def _inference(args, net, cfg, report, format_table) -> int:
    from .inference import INFERENCE_STRATEGIES, compare_inference, scale_to_fabric
    from .report import inference_rows, inference_summary_rows, write_inference_report

    if args.scale_to_fabric:
        net = scale_to_fabric(net, cfg)
        print(f"scaled to the fabric: {net.name}")
    chosen = args.strategy or "search"
    if chosen not in INFERENCE_STRATEGIES:
        raise PartitionError(f"inference strategy {chosen!r}: allowed {', '.join(INFERENCE_STRATEGIES)}")
    batch = args.batch or 1
    t = time.perf_counter()
    plans = compare_inference(net, cfg, batch)
    dt = time.perf_counter() - t
    p = plans[chosen]
    print(f"fabric {cfg.name}: {cfg.fabric.n_macros} macros {cfg.macro.rows}x{cfg.macro.cols}x{cfg.macro.pages} "
          f"pages, batch {batch}; cycle model: {p.cycle_model}; search {dt:.2f} s")
    print(f"\n{chosen} ({p.schedule}): per layer")
    print(format_table(*inference_rows(p)))
    print("\nstrategies (cycles per batch in steady state)")
    print(format_table(*inference_summary_rows(plans)))
    if report:
        print(f"\nreport: {write_inference_report(plans, chosen, report)}")
    return 0
