"""Test-session settings shared by every module.

``make test`` and ``make test-fast`` run with ``pytest -n 2 --dist loadgroup`` (pytest below 9.2, see
pyproject.toml). A module whose tests share an
expensive module-scoped fixture (quantized model builds, synthesis of every preset, an exploration run) is kept
on one worker, so that the fixture is built once per run instead of once per worker; every other test is spread
as ``--dist load`` spreads it.

The fabric and system models are compiled by g++ at ``-O1`` in a test session (``CIMFORGE_CXX_OPT``, set here
for this process, the xdist workers and the ``cimforge`` commands the tests start) instead of ``-O3``, what
users and benches get: the RTL is the same, the models' C++ builds take about half the time (the largest file
of the default system: 3.4 s at -O1, 6.2 s at -O3) and the tests' simulations are short. The build cache keys
on the optimisation, so a test never reuses a bench's model or the other way round.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("CIMFORGE_CXX_OPT", "-O1")

#: Modules whose module-scoped fixtures cost more than their tests (model sets, syntheses, explorations).
SHARED_FIXTURE_MODULES = {
    "test_cli_compile", "test_codesign_models", "test_explore_dask", "test_golden_models", "test_model_sets",
    "test_packaging", "test_sim_cli", "test_synth_network", "test_synth_presets", "test_synth_synthesize",
}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        module = getattr(item, "module", None)
        module = module.__name__.rsplit(".", 1)[-1] if module else ""
        if module in SHARED_FIXTURE_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))
