"""Packaging: the wheel carries every module, the model fixtures, the synthesis baselines and the entry point, and
the CLI runs from a non-editable install (issue #10, build item 7).

The wheel is built from a copy of the package folders (not in the tree: setuptools' ``build/lib`` would keep
files deleted since and put them into later wheels), offline, in this environment (``--no-build-isolation``;
the ``test`` extra brings setuptools >= 77).
"""

from __future__ import annotations

import configparser
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from cimforge.golden.datasets import DIGITS_SPLIT, MODELS_DIR

ROOT = Path(__file__).resolve().parents[1]
#: What the code reads from the models folder (golden/datasets.py, sim/cosim.py, the CLI's defaults).
MODEL_FILES = ("digits_split.json", "digits_models.json", "digits_cnn_qop.onnx", "digits_cnn_qdq.onnx",
               "digits_resnet_qop.onnx", "digits_resnet_qdq.onnx", "digits_cnn_float.onnx",
               "digits_resnet_float.onnx")


def _setuptools(root: Path = ROOT) -> dict:
    """``[tool.setuptools]`` of ``root/pyproject.toml`` (read afresh: another engineer may add a package while
    the tests run, and the wheel is judged by the pyproject it was built from)."""
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]


def _source_dir(package: str, root: Path = ROOT, setup: dict | None = None) -> Path:
    """The folder a package is built from: its own package-dir entry, else its parent's plus its last name."""
    package_dir = (setup or _setuptools(root))["package-dir"]
    if package in package_dir:
        return root / package_dir[package]
    parent, _, name = package.rpartition(".")
    return _source_dir(parent, root, setup) / name


def _expected_files(root: Path) -> set[str]:
    """Every file the wheel built from ``root`` must hold: each listed package's modules and package data."""
    setup, files = _setuptools(root), set()
    for package in setup["packages"]:
        src, dest = _source_dir(package, root, setup), package.replace(".", "/")
        files |= {f"{dest}/{p.name}" for p in src.glob("*.py")}
        for pattern in setup["package-data"].get(package, []):
            files |= {f"{dest}/{p.relative_to(src).as_posix()}" for p in src.glob(pattern)}
    return files


def test_every_package_folder_is_listed():
    """A subpackage added under a mapped folder but not named in pyproject's packages would be left out of the
    wheel silently (an editable install still finds it); so would a data folder without a package entry."""
    setup = _setuptools()
    listed = {_source_dir(p, ROOT, setup).resolve() for p in setup["packages"]}
    for root in {_source_dir(p, ROOT, setup) for p in setup["package-dir"]}:
        for init in root.rglob("__init__.py"):
            assert init.parent.resolve() in listed, f"{init.parent.relative_to(ROOT)} is not in pyproject's packages"
    for package in setup["package-data"]:
        assert package in setup["packages"], f"package-data for {package!r}, which is not in packages"
    # The data folders the code reads are packages of their own (no 'absent from packages' warning).
    assert _source_dir("cimforge.synth.baselines", ROOT, setup) == ROOT / "synth" / "baselines"
    assert _source_dir("cimforge.models", ROOT, setup) == ROOT / "models"


def test_models_dir_is_the_models_package():
    """MODELS_DIR is the folder of the package ``cimforge.models``: in this (editable) install the source tree's
    models/, and every file the code reads from it is there."""
    assert MODELS_DIR.resolve() == (ROOT / "models").resolve()
    assert DIGITS_SPLIT == MODELS_DIR / "digits_split.json"
    for name in MODEL_FILES:
        assert (MODELS_DIR / name).is_file(), name
    assert (MODELS_DIR / "make_digits_models.py").is_file()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The project's wheel, built offline from a copy of the package folders, and that copy."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for top in sorted({Path(d).parts[0] for d in _setuptools(src)["package-dir"].values()}):
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(out), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # setuptools reports configuration problems (a package folder absent from `packages`, a deprecated license
    # table) as ...Warning: lines, and goes on
    assert "Warning:" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    (path,) = out.glob("cimforge-*.whl")
    return path, src


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


def test_wheel_holds_every_module_and_data_file(built):
    wheel, src = built
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = _expected_files(src)
    missing = sorted(expected - names)
    assert not missing, f"missing from the wheel: {missing}"
    # ... and nothing else: no module from a stale build or a folder that is not a package
    extra = sorted(n for n in names - expected if not n.startswith("cimforge-"))
    assert not extra, f"unexpected in the wheel: {extra}"
    for name in MODEL_FILES:
        assert f"cimforge/models/{name}" in names
    for baseline in ("tiny", "default", "isscc22"):
        assert f"cimforge/synth/baselines/{baseline}.json" in names
    for module in ("cimforge/cli.py", "cimforge/gen/isa.py", "cimforge/golden/datasets.py",
                   "cimforge/compiler/compile.py", "cimforge/compiler/partition/__init__.py",
                   "cimforge/compiler/lowering/__init__.py", "cimforge/sim/cosim.py", "cimforge/synth/cli.py"):
        assert module in names


def test_wheel_entry_point(wheel):
    with zipfile.ZipFile(wheel) as z:
        (ep_name,) = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        eps = configparser.ConfigParser()
        eps.read_string(z.read(ep_name).decode())
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert dict(eps["console_scripts"]) == scripts == {"cimforge": "cimforge.cli:main"}


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment with the wheel installed (not editable); the dependencies come from this
    environment's site-packages through a .pth file, so nothing is downloaded."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Install before the .pth exists: with it, pip would see (and might uninstall) this environment's editable
    # cimforge.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "cimforge_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def _run(venv: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_cli_from_a_wheel_install(installed, tmp_path):
    """``cimforge golden`` on a shipped model and the digits split, from outside the source tree."""
    proc = _run(installed, tmp_path, str(installed / "bin" / "python"), "-c",
                "import cimforge, cimforge.golden.datasets as d; print(cimforge.__file__); print(d.MODELS_DIR)")
    assert proc.returncode == 0, proc.stderr
    package_file, models_dir = map(Path, proc.stdout.split())
    assert package_file.is_relative_to(installed) and models_dir.is_relative_to(installed), proc.stdout
    assert not models_dir.is_relative_to(ROOT)
    proc = _run(installed, tmp_path, str(installed / "bin" / "cimforge"), "golden",
                str(models_dir / "digits_cnn_qop.onnx"), "--dataset", "digits", "--limit", "8")
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "accuracy" in proc.stdout.lower()
    # what `cimforge sim` loads before it simulates: the model list, the models and the split
    proc = _run(installed, tmp_path, str(installed / "bin" / "python"), "-c",
                "from cimforge.sim.cosim import MODELS, load_digits_model\n"
                "from cimforge.golden.datasets import load_digits_split\n"
                "print(*[len(load_digits_model(m).layers) > 0 for m in MODELS], len(load_digits_split().y_test))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True", "450"]
