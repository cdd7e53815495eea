"""Scale of generation (issue 11, item 4): generation time, peak memory, Verilog size and Verilator build time of
each preset (the ``imagenet`` one included), with and without the all-zero memory contents
(:func:`cimforge.gen.meminit.elide_zero_init`).

::

    .venv/bin/python bench/bench_gen_scale.py                  # every preset, both forms
    .venv/bin/python bench/bench_gen_scale.py --only imagenet --no-build
    .venv/bin/python bench/bench_gen_scale.py --only default --elide only

Each measurement runs in a fresh process (peak resident memory is the child's ``ru_maxrss``). The Verilator
build is ``verilator --cc --build`` of the fabric top with the cosimulation's options (``-fno-inline``, -O3),
without cocotb; it runs with ``-j 2`` (the machine's cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cimforge.presets import PRESETS

CONFIGS = dict(PRESETS)

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {bench!r})
from bench_gen_scale import CONFIGS
from cimforge.gen.emit import design_verilog
from cimforge.gen.meminit import elide_zero_init
import contextlib
cfg = CONFIGS[{name!r}]
t0 = time.perf_counter()
with (elide_zero_init() if {elide!r} else contextlib.nullcontext()):
    tops, text = design_verilog(cfg)
dt = time.perf_counter() - t0
open({out!r}, "w").write(text)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"gen_s": dt, "cpu_s": time.process_time(), "peak_mb": peak, "verilog_bytes": len(text),
                  "top": tops["fabric"]}}))
"""


def generate(name: str, elide: bool, out: Path) -> dict:
    """Generation figures of configuration ``name`` in a fresh process; the Verilog goes to ``out``."""
    code = _CHILD.format(bench=str(Path(__file__).parent), name=name, elide=elide, out=str(out))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def verilator_build(vfile: Path, top: str, work: Path) -> dict:
    """Wall time and peak memory (children's ``ru_maxrss``) of a Verilator build of ``top``."""
    from cimforge.sim.tools import setup_verilator
    exe = setup_verilator()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run([exe, "--cc", "--build", "-j", "2", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-fno-inline",
                    "-CFLAGS", "-O3", "--top-module", top, "--Mdir", str(work / "obj"), str(vfile)],
                   check=True, capture_output=True, text=True, env={**os.environ})
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"build_s": time.perf_counter() - t0, "build_peak_mb": max(peak, before) / 1024}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="*", choices=list(CONFIGS), help="configurations to measure (default: all)")
    p.add_argument("--elide", choices=["both", "only", "never"], default="both",
                   help="measure with the zero contents elided, without, or both (default)")
    p.add_argument("--no-build", action="store_true", help="skip the Verilator builds")
    args = p.parse_args(argv)
    forms = {"both": (False, True), "only": (True,), "never": (False,)}[args.elide]
    print(f"{'config':9s} {'zero init':9s} {'gen s':>7s} {'cpu s':>7s} {'peak MB':>8s} {'Verilog MB':>10s} "
          f"{'build s':>8s} {'build MB':>9s}")
    for name in args.only or list(CONFIGS):
        for elide in forms:
            with tempfile.TemporaryDirectory(prefix="cimforge-scale-") as tmp:
                vfile = Path(tmp) / f"{name}.v"
                g = generate(name, elide, vfile)
                b = {} if args.no_build else verilator_build(vfile, g["top"], Path(tmp))
            build = f"{b['build_s']:8.1f} {b['build_peak_mb']:9.0f}" if b else f"{'-':>8s} {'-':>9s}"
            print(f"{name:9s} {'elided' if elide else 'written':9s} {g['gen_s']:7.1f} {g['cpu_s']:7.1f} "
                  f"{g['peak_mb']:8.0f} {g['verilog_bytes'] / 1e6:10.2f} {build}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
