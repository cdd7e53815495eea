"""``cimforge graph``: the report of each algorithm, and bad input as one-line named errors (exit 2)."""

from __future__ import annotations

import pytest

from cimforge.cli import main


@pytest.mark.parametrize("algo", ["bfs", "sssp", "cc", "pagerank"])
def test_report(algo, capsys):
    assert main(["graph", algo, "--graph", "florentine", "--preset", "default", "--source", "Medici"]) == 0
    out = capsys.readouterr().out
    assert "matches networkx" in out and "bit-exact with the golden model" in out
    for what in ("cycles predicted", "skipped empty", "utilisation", "MHz", "scipy.sparse", "speed-up"):
        assert what in out


def test_rtl_report(capsys):
    assert main(["graph", "bfs", "--graph", "florentine", "--preset", "tiny", "--rtl", "engine"]) == 0
    out = capsys.readouterr().out
    assert "RTL (graph engine + macros, Amaranth simulator): bit-exact" in out


def test_bad_input(tmp_path, capsys):
    neg = tmp_path / "neg.txt"
    neg.write_text("a b 3\nb c -1\n")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1\n")
    loops = tmp_path / "loops.txt"
    loops.write_text("1 1\n1 2\n5 5\n")
    cases = [(["sssp", "--graph", str(neg), "--source", "a"], "negative weight -1"),
             (["bfs", "--graph", "karate", "--source", "77"], "not a vertex of karate"),
             (["bfs", "--graph", str(bad)], "bad.txt line 2"),
             (["cc", "--graph", "er:n=10"], "missing field 'p'"),
             (["pagerank", "--graph", "karate", "--rtl", "engine"], "--rtl engine: runs bfs so far"),
             (["cc", "--graph", "karate", "--preset", "tiny"], "cc on 'tiny': its 16-bit"),
             (["bfs", "--graph", "karate", "--rtl", "fpga"], "--rtl: invalid choice: 'fpga'")]
    for argv, msg in cases:
        argv = argv if "--preset" in argv else [*argv, "--preset", "default"]
        assert main(["graph", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err
    # self loops and an isolated vertex (5 with only its loop): correct results
    for algo in ("bfs", "sssp", "cc", "pagerank"):
        assert main(["graph", algo, "--graph", str(loops), "--preset", "default", "--source", "1"]) == 0
        assert "matches networkx" in capsys.readouterr().out
