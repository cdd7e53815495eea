"""Acceptance of cimforge explore (issue 16): a space of 8 points on a two-worker local Dask cluster gives the
results of a serial run; a second run computes nothing new; a worker killed during a run still yields every
point; NSGA-II over a larger space evaluates distinct points that meet the constraints, the same ones for the
same seed; ``cimforge explore`` writes its report.

Every point synthesises its macro (cached by content under build/synth/cache: the 8 points share two macro
geometries) and the serial run checks one point on the RTL (Verilator build cached under build/sim). Times on
the shared 2-core machine (load about 10): 6 min 23 s with one Verilator build (the serial fixture 220 s of it,
the command on an existing scheduler 71 s, the Dask run and its rerun 51 s, the killed worker 30 s, NSGA-II 7 s);
add about a minute per macro geometry the first time it is synthesised.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from cimforge.cli import main
from cimforge.explore.cache import ResultCache
from cimforge.explore.models import resolve_models
from cimforge.explore.runner import DaskBackend, Runner, SerialBackend, dask_client
from cimforge.explore.search import explore
from cimforge.explore.space import parse_space

pytestmark = [pytest.mark.slow, pytest.mark.synth]

SPACE = {
    "name": "eight", "base": "default",
    # act_depth 256: the digits CNN's tensors live in the external memory (the compiler's external-memory mode,
    # docs/memory.md), so the RTL check runs the fabric with its external memory model
    "fields": {"macro": {"rows": [16, 32], "cols": [32], "pages": [4]},
               "fabric": {"n_macros": [1, 2], "rounding": ["single", "double"], "act_depth": [256]}},
    "rtl": {"fraction": 0.1, "images": 2},
}


def _outcomes(ex) -> dict:
    """Per point: its values, per-model results and RTL checks, without wall times."""
    def strip(d):
        return {k: v for k, v in d.items() if k != "seconds"}
    return {pr.point.key: (pr.point.values, {m: strip(r) for m, r in pr.results.items()},
                           {m: strip(r) for m, r in pr.rtl.items()}) for pr in ex.points}


@pytest.fixture(scope="module")
def models():
    return resolve_models(["digits_cnn_qop"])


@pytest.fixture(scope="module")
def serial(tmp_path_factory, models):
    cache = ResultCache(tmp_path_factory.mktemp("serial-cache"))
    ex = explore(parse_space(SPACE), models, Runner(cache, SerialBackend()),
                 log_dir=str(tmp_path_factory.mktemp("logs")))
    assert len(ex.points) == 8 and ex.errors == 0
    assert all(pr.complete for pr in ex.points)
    assert ex.computed == 9 and ex.cached == 0  # 8 evaluations, 1 RTL check
    return ex


def test_the_rtl_spot_check_is_bit_exact_with_the_predicted_cycles(serial):
    (check,) = serial.rtl_checks
    pr, model, result = check
    assert result["status"] == "pass", result
    assert result["images"] == 2
    assert result["measured_cycles_per_inference"] == [pr.results[model]["cycles_per_inference"]] * 2


def test_two_worker_dask_run_equals_the_serial_run_and_a_rerun_computes_nothing(serial, models, tmp_path):
    with dask_client(workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        cache = ResultCache(tmp_path / "cache")
        ex = explore(parse_space(SPACE), models, Runner(cache, DaskBackend(client)), log_dir=str(tmp_path))
        assert ex.errors == 0 and (ex.computed, ex.cached) == (9, 0)
        assert _outcomes(ex) == _outcomes(serial)
        again = explore(parse_space(SPACE), models, Runner(cache, DaskBackend(client)), log_dir=str(tmp_path))
        assert (again.computed, again.cached, again.errors) == (0, 9, 0)
        assert _outcomes(again) == _outcomes(serial)


def test_a_worker_killed_during_a_run_still_yields_every_point(serial, models, tmp_path):
    killed = {}
    with dask_client(workers=2) as client:
        def kill_one_busy_worker():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not killed:
                busy = [w for w, keys in client.processing().items() if keys]
                if busy:
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    killed["tasks"] = client.processing()[busy[0]]
                    os.kill(pid, signal.SIGKILL)
                    killed["pid"] = pid
                    return
                time.sleep(0.05)

        thread = threading.Thread(target=kill_one_busy_worker, daemon=True)
        thread.start()
        ex = explore(parse_space(SPACE), models, Runner(ResultCache(tmp_path / "cache"), DaskBackend(client)),
                     rtl_fraction=0)
        thread.join()
    assert killed.get("pid"), "no worker was busy to kill"
    assert ex.errors == 0 and ex.computed == 8
    want = {k: (v, r, {}) for k, (v, r, _) in _outcomes(serial).items()}
    assert _outcomes(ex) == want


def test_nsga2_evaluates_distinct_points_that_meet_the_constraints(models, tmp_path):
    """A 160-point space (one macro geometry, so one synthesis) searched by NSGA-II for 16 points in generations
    of 8; the same seed gives the same points."""
    space = {"name": "wide", "base": "default",
             "fields": {"macro": {"rows": [32], "cols": [32], "pages": [8]},
                        "fabric": {"n_macros": {"min": 1, "max": 4}, "act_depth": {"min": 1024, "max": 16384,
                                                                                     "times": 2},
                                   "ext_latency": [8, 32], "rounding": ["single", "double"]},
                        "controller": {"load_queue": [4, 8]}},
             "constraints": ["fabric.n_macros != 3 or controller.load_queue == 8"],
             "search": {"exhaustive_max": 50, "trials": 16, "population": 8, "seed": 3}}
    sp = parse_space(space)
    assert sp.size == 4 * 5 * 2 * 2 * 2
    runs = []
    for i in range(2):
        ex = explore(sp, models, Runner(ResultCache(tmp_path / f"c{i}"), SerialBackend()), rtl_fraction=0)
        assert ex.method == "nsga2" and ex.errors == 0
        keys = [pr.point.key for pr in ex.points]
        assert len(keys) == len(set(keys)) >= 16
        assert all(sp.meets(pr.point.values) for pr in ex.points)
        runs.append(keys)
    assert runs[0] == runs[1]


def test_the_command_on_an_existing_scheduler_writes_the_report(serial, tmp_path, capsys):
    """``cimforge explore --scheduler ADDRESS`` on a cluster started apart (the same 8 designs as the serial
    run, so its RTL check reuses that Verilator build), then the report files."""
    import tomli_w
    from distributed import LocalCluster

    space = tmp_path / "eight.toml"
    space.write_text(tomli_w.dumps(SPACE))
    out = tmp_path / "out"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        rc = main(["explore", "--space", str(space), "--model", "digits_cnn_qop", "--model", "digits_cnn_qop",
                   "--scheduler", cluster.scheduler_address, "--out", str(out), "--cache", str(tmp_path / "cache"),
                   "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "eight: 8 points (exhaustive) x 1 model(s), 8 fit at least one model" in text
    assert "jobs computed 9, cached 0, errors 0" in text and ": pass" in text
    for name in ("report.md", "report.html", "points.csv", "results.json", "pareto_area_mm2_energy_nj.png",
                 "pareto_area_mm2_latency_cycles.png", "pareto_energy_nj_latency_cycles.png"):
        assert (out / name).stat().st_size > 0, name
    assert len((out / "points.csv").read_text().splitlines()) == 9
    best = sorted((out / "best").glob("*.toml"))
    assert best
    from cimforge.config import load_config
    names = {pr.point.config.name for pr in serial.points}
    for path in best:  # ready for cimforge generate --config
        cfg = load_config(path)
        assert cfg.name == path.stem and cfg.name in names and cfg.macro.cols == 32
    bad = main(["explore", "--space", str(space), "--model", "digits_cnn_qop", "--scheduler", "tcp://127.0.0.1:9",
                "--out", str(out)])
    err = capsys.readouterr().err
    assert bad == 2 and "--scheduler 'tcp://127.0.0.1:9': cannot connect" in err and err.count("\n") == 1
