"""``cimforge compile`` of an ImageNet-set model on the ``imagenet`` preset, as a user calls it (a subprocess on the
ONNX file): SqueezeNet 224x224 compiles in external-memory mode and the program, memory images, listing and
predicted cycles are written and agree with each other; on the ``default`` preset the compiler refuses it, exit 2
with one line naming the layer, the buffer and the size that would fit. bench/bench_cli_imagenet.py runs the
whole ImageNet set this way, and ``cimforge sim`` of each on the RTL.

Slow-marked: two compilations of SqueezeNet (about 10 s each on an idle core, the model built once and cached
under build/models).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from cimforge.golden import model_sets as ms

pytestmark = pytest.mark.slow

SEED = 0


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "cimforge", *argv], capture_output=True, text=True)


@pytest.fixture(scope="module")
def squeezenet(tmp_path_factory):
    print(f"seed {SEED}")
    path = tmp_path_factory.mktemp("imagenet") / "squeezenet.onnx"
    shutil.copyfile(ms.build("squeezenet", seed=SEED), path)
    return path


def test_compile_squeezenet_on_imagenet(squeezenet, tmp_path):
    out = tmp_path / "prog"
    p = _cli("compile", str(squeezenet), "--preset", "imagenet", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "tensors in the external memory" in p.stdout
    manifest = json.loads((out / "program.json").read_text())
    assert manifest["config"] == "imagenet" and manifest["tensors_in"] == "external"
    code = (out / "program.hex").read_text().split()
    assert manifest["memories"]["program"]["words"] == len(code) > 1000
    listing = [line.split() for line in (out / "listing.txt").read_text().splitlines() if not line.startswith("#")]
    assert [int(f[0]) for f in listing] == list(range(len(code)))  # one line per instruction, pc order
    assert {f[2] for f in listing} >= {"DMA", "DSYNC", "MAC", "LOAD", "END"} and listing[-1][2] == "END"
    cycles = json.loads((out / "cycles.json").read_text())
    assert cycles["run_cycles"] == int(listing[-1][1]) + 1 > 1_000_000  # the END's predicted retire cycle
    assert f"predicted: {cycles['run_cycles']} cycles per run" in p.stdout
    convs = [layer for layer in cycles["layers"] if layer["kind"] == "conv2d"]
    assert convs and all(0 < layer["utilisation"] <= layer["bound"] + 1e-9 for layer in convs)
    ext = (out / "ext_init.hex").read_text().splitlines()
    assert len(ext) > 100_000  # SqueezeNet's weights live in the external memory


def test_compile_refused_is_one_line_naming_the_limit(squeezenet, tmp_path):
    """On the default preset SqueezeNet's tensors fit the memories (row bands; its first max pool, whose one row
    band does not fit, in channel tiles) but its program does not; with a 1024-word activation memory a layer's
    row band does not either: each refusal one line naming the limit and the size that fits, exit 2, no
    output directory."""
    p = _cli("compile", str(squeezenet), "--preset", "default", "--out", str(tmp_path / "prog"))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "controller.program_depth = 8192: allowed controller.program_depth >= " in lines[0], lines[0]
    from dataclasses import replace

    from cimforge.config import save_config
    from cimforge.presets import get_preset
    cfg = get_preset("default")  # the default preset, its activation memory a quarter
    save_config(replace(cfg, fabric=replace(cfg.fabric, act_depth=1024)), tmp_path / "small.toml")
    p = _cli("compile", str(squeezenet), "--config", str(tmp_path / "small.toml"), "--out", str(tmp_path / "prog"))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("cimforge compile: error: layer '")
    assert "fabric.act_depth = 1024: allowed fabric.act_depth >= " in lines[0], lines[0]
    assert not (tmp_path / "prog").exists()
