"""The macro demo (``cimforge sim --macro``, ``make sim-macro``): generate a preset's macro, run corner and
random operations on it in Verilator (and Icarus when installed), score every result and cycle count against
the golden model, and print what was checked."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import xml.etree.ElementTree as ET

from ..presets import get_preset
from ..gen.emit import generate
from .macro_stimulus import MACRO_PORTS
from .tools import available_simulators, run_cocotb


def main(args: argparse.Namespace) -> int:
    cfg = get_preset(getattr(args, "preset", None) or "default")
    m = cfg.macro
    # None means "not given"; 0 is a real seed and a real (if empty) run, never the default
    n_ops = 400 if getattr(args, "ops", None) is None else args.ops
    seed = 2026 if getattr(args, "seed", None) is None else args.seed
    print(f"macro '{cfg.name}': rows={m.rows} pages={m.pages} cols={m.cols} (max wb {m.max_wb}, max ab "
          f"{m.max_ab}, {m.acc_width}-bit results); seed {seed}, {n_ops} random operations after the corners")
    with tempfile.TemporaryDirectory() as tmp:
        verilog = generate(cfg, tmp)[0]
        plan = json.dumps({"macros": [{"cfg": dataclasses.asdict(m), "seed": seed, "n_ops": n_ops}]})
        for sim in available_simulators():
            t0 = time.perf_counter()
            results = run_cocotb(sim, [verilog], f"{cfg.name}_cim_macro", "cimforge.sim.macro_tb",
                                 env={"CIMFORGE_MACRO_PLAN": plan}, public=MACRO_PORTS)
            case = ET.parse(results).getroot().find(".//testcase")
            props = {p.get("name"): p.get("value") for p in case.iter("property")}
            cycles = float(props.get("sim_time_duration", 0)) / 10  # 10 ns clock
            print(f"{sim:9s}: PASS, {cycles:.0f} cycles simulated in {float(case.get('time')):.2f} s "
                  f"({cycles / max(float(case.get('time')), 1e-9):,.0f} cycles/s); "
                  f"wall time with build {time.perf_counter() - t0:.1f} s")
    return 0
