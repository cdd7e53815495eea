"""cimforge explore without synthesis or simulation: space files (ranges, lists, constraints, the named one-line
errors of bad spaces, exit 2), point names and keys, the result cache (atomic, corrupt entries recomputed),
Pareto fronts, and the runner's cache accounting. The Dask and NSGA-II acceptance tests, which synthesise, are
in tests/test_explore_dask.py."""

from __future__ import annotations

import json

import pytest

from cimforge.cli import main
from cimforge.errors import UserError
from cimforge.explore.cache import ResultCache, result_key, tool_version
from cimforge.explore.report import pareto_front
from cimforge.explore.runner import Job, Runner
from cimforge.explore.space import config_key, load_space, parse_space, point_name
from cimforge.presets import get_preset


def _space(tmp_path, text: str):
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


def test_ranges_lists_and_constraints_make_the_points(tmp_path):
    sp = load_space(_space(tmp_path, '''
base = "tiny"
constraints = ["macro.rows * macro.pages <= 32", "fabric.n_macros in (1, 2)"]
[fields]
macro.rows = { min = 8, max = 32, times = 2 }
macro.pages = { min = 2, max = 6, step = 2 }
fabric.n_macros = [1, 2, 3, 2]
fabric.rounding = "double"
'''))
    assert sp.axes == {"macro.rows": [8, 16, 32], "macro.pages": [2, 4, 6], "fabric.n_macros": [1, 2, 3]}
    assert sp.base.fabric.rounding == "double"  # one value: part of the base, not an axis
    assert sp.size == 27
    pts = sp.points()
    got = {(dict(p.values)["macro.rows"], dict(p.values)["macro.pages"], dict(p.values)["fabric.n_macros"])
           for p in pts}
    want = {(r, pg, n) for r in (8, 16, 32) for pg in (2, 4, 6) for n in (1, 2) if r * pg <= 32}
    assert got == want and len(pts) == len(want) == 6
    for p in pts:  # every other field is the base's; the name is the content's
        cfg = p.config
        assert cfg.macro.cols == 16 and cfg.fabric.rounding == "double"
        assert cfg.name == point_name(cfg) and p.key == config_key(cfg)
    assert sp.search == {"method": "auto", "exhaustive_max": 64, "trials": 48, "population": 12, "seed": 0}


def test_equal_designs_have_equal_keys_whatever_their_name():
    a = get_preset("default")
    from dataclasses import replace
    b = replace(a, name="other")
    assert config_key(a) == config_key(b) and point_name(a) == point_name(b)
    assert config_key(a) != config_key(a.with_macro(pages=4))


def test_invalid_points_are_kept_with_the_reason(tmp_path):
    sp = load_space(_space(tmp_path, '[fields]\nmacro.cols = [12, 16]\n'))
    pts = sp.points()
    assert [p.config is None for p in pts] == [True, False]
    assert "macro.cols" in pts[0].invalid and "multiple of macro.max_wb" in pts[0].invalid


BAD_SPACES = [
    ('[fields]\nmacro.rowz = [8]\n', "fields.macro.rowz: unknown field; allowed macro.rows"),
    ('[fields]\nmacros.rows = [8]\n', "fields.macros: unknown block; allowed macro, fabric, controller"),
    ('[fields]\nmacro.rows = []\n', "fields.macro.rows = []: empty list"),
    ('[fields]\nmacro.rows = { min = 64, max = 32 }\n', "fields.macro.rows: empty range min = 64 > max = 32"),
    ('[fields]\nmacro.rows = { min = 8, max = 32, step = 0 }\n', "fields.macro.rows.step = 0"),
    ('[fields]\nmacro.rows = { min = 8 }\n', "fields.macro.rows = {'min': 8}: allowed a list"),
    ('constraints = ["macro.rows > 64"]\n[fields]\nmacro.rows = [8, 16]\n',
     "constraint 'macro.rows > 64': no point of the space meets it"),
    ('constraints = ["macro.rows >= 16", "macro.rows < 16"]\n[fields]\nmacro.rows = [8, 16]\n',
     "constraint 'macro.rows < 16': no point of the space meets it"),
    ('constraints = ["macro.colz > 1"]\n[fields]\nmacro.rows = [8]\n', "unknown field macro.colz"),
    ('constraints = ["__import__(\'os\')"]\n[fields]\nmacro.rows = [8]\n', "call"),
    ('constraints = ["macro.rows >"]\n[fields]\nmacro.rows = [8]\n', "not an expression"),
    ('[fields]\nmacro.cols = [12, 20]\n', "fields: no point makes a valid configuration"),
    ('base = "huge"\n[fields]\nmacro.rows = [8]\n', "base = 'huge': allowed one of tiny, default, isscc22"),
    ('[fieldz]\nmacro.rows = [8]\n', "space key 'fieldz'"),
    ('[fields]\n', "fields: no field varies"),
    ('[fields]\nmacro.rows = [8]\nconstraints = ["macro.rows > 1"]\n', "top-level keys such as constraints go"),
    ('[fields]\nmacro.rows = [8]\n[search]\nmethod = "random"\n', "search.method = 'random': allowed auto, "),
    ('[fields]\nmacro.rows = [8]\n[rtl]\nfraction = 0\n', "rtl.fraction = 0: allowed a number in (0, 1]"),
    ('[fields]\nmacro.rows = [8]\n[rtl]\nimages = 2.5\n', "rtl.images = 2.5: allowed int"),
    ('[fields\n', "not valid TOML"),
    ('[fields]\nmacro.rows = [8, 16]\nmacro.pages = 0\n', "fields.macro.pages: invalid macro.pages = 0"),
    # the name names the report folder: a path would write the report anywhere
    ('name = "../../escaped"\n[fields]\nmacro.rows = [8]\n', "name = '../../escaped': allowed letters"),
    ('name = "/tmp/x"\n[fields]\nmacro.rows = [8]\n', "name = '/tmp/x': allowed letters"),
    # a power that would compute for hours before any point is judged
    ('constraints = ["10**10**10 > 1"]\n[fields]\nmacro.rows = [8]\n', "allowed an exponent of at most 64"),
]


@pytest.mark.parametrize("text, message", BAD_SPACES, ids=[m[:40] for _, m in BAD_SPACES])
def test_bad_spaces_are_one_line_named_errors(tmp_path, capsys, text, message):
    path = _space(tmp_path, text)
    with pytest.raises(UserError, match=None) as info:
        load_space(path)
    assert message in str(info.value)
    rc = main(["explore", "--space", str(path), "--model", "digits_cnn_qop", "--serial", "--out",
               str(tmp_path / "out"), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("cimforge explore: error: ") and message in err
    assert "Traceback" not in err


def test_bad_models_and_options_are_named(tmp_path, capsys):
    path = _space(tmp_path, '[fields]\nmacro.rows = [64]\n')
    cases = [(["--model", "nosuch"], "--model 'nosuch': allowed a quantized .onnx file, tiny"),
             (["--model", str(tmp_path / "missing.onnx")], "no such file"),
             (["--model", "digits_cnn_qop", "--rtl-fraction", "0"], "--rtl-fraction"),
             (["--model", "digits_cnn_qop", "--workers", "0"], "--workers"),
             (["--model", "digits_cnn_qop", "--workers", "2"], "--workers with --serial"),
             (["--model", "digits_cnn_qop", "--serial", "--scheduler", "tcp://x:1"], "not allowed with")]
    for extra, message in cases:
        rc = main(["explore", "--space", str(path), *extra, "--out", str(tmp_path / "o"), "--serial"]
                  if "--serial" not in extra else ["explore", "--space", str(path), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and err.count("\n") == 1, (extra, err)


def test_pareto_front_keeps_the_non_dominated_points():
    items = [{"a": 1, "b": 5}, {"a": 2, "b": 2}, {"a": 3, "b": 3}, {"a": 2, "b": 2}, {"a": 5, "b": 1},
             {"a": 6, "b": 1}]
    front = pareto_front(items, ("a", "b"))
    assert front == [{"a": 1, "b": 5}, {"a": 2, "b": 2}, {"a": 2, "b": 2}, {"a": 5, "b": 1}]
    assert pareto_front([], ("a", "b")) == []
    three = [{"a": 1, "b": 2, "c": 3}, {"a": 2, "b": 1, "c": 3}, {"a": 2, "b": 2, "c": 3}]
    assert pareto_front(three, ("a", "b", "c")) == three[:2]


def test_cache_is_atomic_and_recomputes_corrupt_entries(tmp_path):
    cache = ResultCache(tmp_path)
    key = result_key("c" * 64, "m" * 64, {"kind": "eval"})
    assert key != result_key("c" * 64, "m" * 64, {"kind": "rtl", "images": 2, "seed": 0})
    assert "cimforge" in tool_version() and "sources" in tool_version()
    assert cache.get(key) is None
    assert cache.put(key, {"status": "ok", "x": 1})
    assert cache.get(key) == {"status": "ok", "x": 1}
    assert not cache.put(key + "e", {"status": "error", "reason": "boom"})  # errors are tried again next run
    assert cache.get(key + "e") is None
    cache.path(key).write_text('{"status": "ok", "x"')  # truncated: read as missing, and removed
    assert cache.get(key) is None and not cache.path(key).exists()
    assert not any(p.name.startswith(".cimforge-") for p in tmp_path.rglob("*"))


class _Counting:
    """A backend that answers every job with its key (the runner's bookkeeping, without any evaluation)."""

    name = "counting"

    def __init__(self):
        self.seen = []

    def map(self, jobs):
        for job in jobs:
            self.seen.append(job.key)
            yield job.key, {"status": "error" if job.key.startswith("e") else "ok", "key": job.key}


def test_runner_computes_each_new_key_once_and_keeps_errors_out_of_the_cache(tmp_path):
    backend = _Counting()
    runner = Runner(ResultCache(tmp_path), backend)
    jobs = [Job(k, "eval", {}, None) for k in ("a1", "b2", "a1", "e3")]
    got = runner.run(jobs)
    assert sorted(got) == ["a1", "b2", "e3"] and backend.seen == ["a1", "b2", "e3"]
    assert (runner.computed, runner.cached, runner.errors) == (3, 0, 1)
    again = Runner(ResultCache(tmp_path), backend)
    assert again.run(jobs) == got
    assert (again.computed, again.cached, again.errors) == (1, 2, 1)  # only the error is tried again
    assert backend.seen[3:] == ["e3"]
    assert json.loads(ResultCache(tmp_path).path("a1").read_text()) == {"key": "a1", "status": "ok"}


class _Interrupted(_Counting):
    """Ctrl-C after ``after`` results."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def map(self, jobs):
        for i, item in enumerate(super().map(jobs)):
            if i == self.after:
                raise KeyboardInterrupt
            yield item


def test_an_interrupted_run_keeps_what_it_finished_and_the_next_run_resumes(tmp_path):
    jobs = [Job(f"k{i}", "eval", {}, None) for i in range(6)]
    with pytest.raises(KeyboardInterrupt):
        Runner(ResultCache(tmp_path), _Interrupted(after=4)).run(jobs)
    assert sorted(p.stem for p in tmp_path.rglob("*.json")) == ["k0", "k1", "k2", "k3"]
    backend = _Counting()
    resumed = Runner(ResultCache(tmp_path), backend)
    got = resumed.run(jobs)
    assert sorted(got) == [f"k{i}" for i in range(6)]
    assert backend.seen == ["k4", "k5"] and (resumed.computed, resumed.cached) == (2, 4)


def test_report_of_hand_made_results_has_every_point_fronts_and_loadable_best_configs(tmp_path):
    """The report of an exploration with known figures (no synthesis: the results are written here): two
    models, one of which does not fit one point; the fronts and best points are the ones worked out by hand."""
    from cimforge.config import load_config
    from cimforge.explore.models import ModelRef
    from cimforge.explore.report import ALL, best_points, fronts, write_report
    from cimforge.explore.search import Exploration, PointResult

    sp = parse_space({"name": "hand", "fields": {"macro": {"rows": [16, 32, 64]}}})
    pts = sp.points()
    figures = {16: (1.0, 30.0, 900), 32: (2.0, 20.0, 500), 64: (4.0, 25.0, 400)}  # area, energy, cycles
    models = [ModelRef("a", b"a", "file"), ModelRef("b", b"b", "file")]
    ex = Exploration(sp, models, "exhaustive")
    for p in pts:
        area, energy, cycles = figures[p.config.macro.rows]
        ok = {"status": "ok", "area_mm2": area, "transistors": int(area * 1e6), "energy_per_inference_nj": energy,
              "cycles_per_inference": cycles, "run_cycles": cycles + 10, "utilisation": 0.5}
        res = {"a": ok, "b": dict(ok) if p.config.macro.rows != 16 else
               {"status": "no_fit", "reason": "activation memory too small"}}
        ex.points.append(PointResult(p, res, {"a": {"status": "pass", "images": 2, "reason": None,
                                                    "measured_cycles_per_inference": [cycles] * 2, "seconds": 1.0}}
                                     if p.config.macro.rows == 32 else {}))
    f = fronts(ex)
    names = {r: next(p.config.name for p in pts if p.config.macro.rows == r) for r in figures}
    assert [pr.point.config.name for pr, _ in f[("area_mm2", "energy_nj")]["a"]] == [names[16], names[32]]
    assert [pr.point.config.name for pr, _ in f[("area_mm2", "latency_cycles")]["a"]] == [names[r] for r in (16, 32, 64)]
    assert [pr.point.config.name for pr, _ in f[("energy_nj", "latency_cycles")][ALL]] == [names[32], names[64]]
    assert {o["energy_nj"] for _, o in f[("area_mm2", "energy_nj")][ALL]} == {40.0}  # 32 rows: 20 + 20
    best = best_points(ex)
    assert [(why, pr.point.config.macro.rows) for why, pr, _, _ in best] == \
        [("least area (mm^2); least energy per inference (nJ)", 32), ("least latency (cycles per inference)", 64)]
    written = write_report(ex, tmp_path, {"wall time": "1 s"})
    assert {p.name for p in written} >= {"report.md", "report.html", "points.csv", "results.json",
                                         "pareto_area_mm2_energy_nj.png"}
    csv_lines = (tmp_path / "points.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 6 and any("no_fit" in line and "activation memory" in line for line in csv_lines)
    md = (tmp_path / "report.md").read_text()
    assert "| `%s` | a | pass | 2 | [500, 500] |" % names[32] in md and "- wall time: 1 s" in md
    html = (tmp_path / "report.html").read_text()
    assert html.count("<table>") == 3 and '<img alt="pareto_area_mm2_energy_nj.png"' in html
    for name in (names[32], names[64]):
        cfg = load_config(tmp_path / "best" / f"{name}.toml")
        assert cfg.name == name and cfg == next(p.config for p in pts if p.config.name == name)
    data = json.loads((tmp_path / "results.json").read_text())
    assert [p["values"]["macro.rows"] for p in data["points"]] == [16, 32, 64]
