"""The ImageNet set (cimforge.golden.model_sets.IMAGENET_SET) through the command line, as a user calls it: for
each model the quantized ONNX file is written, then

    python -m cimforge compile FILE --preset imagenet --out DIR
    python -m cimforge sim --model FILE --preset imagenet --random 1 --seed 0 --report DIR

run as subprocesses. A model passes when ``compile`` exits 0 and writes its program, listing and predicted cycles,
and ``sim`` exits 0 with the report's line ``1 images: all tensors bit-exact``. A model the compiler refuses exits
2 with one line naming the layer: printed as is. Prints the wall time of each step and the report's totals.

    .venv/bin/python bench/bench_cli_imagenet.py                      # every model: compile, then sim
    .venv/bin/python bench/bench_cli_imagenet.py --compile-only       # every model, compile only (minutes)
    .venv/bin/python bench/bench_cli_imagenet.py squeezenet mobilenet_v2

The RTL runs are long: 224x224 inferences on the clock-gated imagenet system simulate at about 20-28 K cycles/s
on an otherwise idle core (predicted on the 32-page preset: SqueezeNet 1.7 M cycles, ShuffleNet 2.5 M,
MobileNetV2 2.7 M, Inception-v1 6.1 M, ResNet-50 13.6 M, DenseNet-121 15.0 M, AlexNet 17.3 M, ZFNet-512 25.9 M,
VGG-19 61.0 M: minutes for the first ones, about 40 minutes for VGG-19); the first run builds the system in
Verilator (about 4 minutes, cached under build/sim). Every model of the set compiles for the preset
(docs/memory.md section 10).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

#: The report line of an RTL run that is bit-exact on every tensor of its one image.
EXACT_LINE = "1 images: all tensors bit-exact"


def cli(*argv: str) -> tuple[int, str, str, float]:
    """Run ``python -m cimforge ARGV`` (the interpreter running this script); (exit code, stdout, stderr, wall s)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "cimforge", *argv], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def compile_model(onnx: Path, out: Path) -> tuple[bool, str]:
    """``cimforge compile`` of ``onnx`` on the imagenet preset into ``out``; (compiled, one line to print)."""
    code, stdout, stderr, wall = cli("compile", str(onnx), "--preset", "imagenet", "--out", str(out))
    if code != 0:
        return False, f"compile exit {code} in {wall:.0f} s: {stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
    missing = [n for n in ("program.hex", "listing.txt", "cycles.json", "program.json") if not (out / n).exists()]
    if missing:
        return False, f"compile exit 0 but {', '.join(missing)} not written"
    cycles = json.loads((out / "cycles.json").read_text())
    instrs = sum(1 for _ in (out / "program.hex").open())
    return True, f"compile {wall:.0f} s: {instrs} instructions, {cycles['run_cycles']} cycles predicted"


def sim_model(onnx: Path, report: Path) -> tuple[bool, str]:
    """``cimforge sim`` of ``onnx`` on the imagenet preset, one random image; (bit-exact, line to print)."""
    code, stdout, stderr, wall = cli("sim", "--model", str(onnx), "--preset", "imagenet", "--random", "1",
                                     "--seed", "0", "--report", str(report))
    lines = [ln for ln in stdout.splitlines() if ln.startswith(("1 images:", "per image:", "simulated"))]
    ok = code == 0 and any(ln.startswith(EXACT_LINE) for ln in lines)
    tail = "; ".join(lines) if lines else (stderr.strip().splitlines()[-1] if stderr.strip() else "no report")
    return ok, f"sim exit {code} in {wall:.0f} s: {tail}"


def main(argv=None) -> int:
    from cimforge.golden import model_sets as ms
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=list(ms.IMAGENET_SET), help="default: the whole ImageNet set")
    ap.add_argument("--compile-only", action="store_true", help="no RTL run")
    ap.add_argument("--out", type=Path, default=Path("build/bench_cli_imagenet"), help="work folder")
    args = ap.parse_args(argv)
    status = 0
    refused = []
    for name in args.models:
        work = args.out / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        t0 = time.perf_counter()
        onnx = work / f"{name}.onnx"
        shutil.copyfile(ms.build(name, seed=0), onnx)
        print(f"{name}: ONNX written in {time.perf_counter() - t0:.0f} s", flush=True)
        ok, line = compile_model(onnx, work / "program")
        print(f"  {line}", flush=True)
        if not ok:
            refused.append((name, line))
            continue
        if args.compile_only:
            continue
        ok, line = sim_model(onnx, work / "report")
        print(f"  {line}", flush=True)
        status |= 0 if ok else 1
    print(f"compiled on imagenet: {len(args.models) - len(refused)} of {len(args.models)}")
    for name, line in refused:
        print(f"  not compiled: {name}: {line}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
