"""The ``cimforge partition`` command."""

from __future__ import annotations

from cimforge.cli import main


def test_training_table_report_and_plot(tmp_path, capsys):
    report = tmp_path / "alexnet.md"
    assert main(["partition", "alexnet", "--accelerators", "128", "--batch", "512", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "accpar: per layer" in out and "strategies" in out
    for name in ("dp", "mp", "owt", "hypar", "accpar"):
        assert f"\n{name} " in out
    assert "38.52" in out  # AccPar's total, millions of elements
    text = report.read_text()
    assert "| accpar |" in text and "![communication](alexnet.png)" in text
    assert (tmp_path / "alexnet.png").stat().st_size > 1000


def test_heterogeneous_and_joint(tmp_path, capsys):
    assert main(["partition", "accpar_alexnet", "-n", "8", "--throughputs", "4x1,4x2", "--no-report"]) == 0
    assert "heterogeneous: compute time balanced" in capsys.readouterr().out
    assert main(["partition", "alexnet", "-n", "8", "--search", "joint", "--strategy", "hypar", "--no-report"]) == 0
    assert "search joint" in capsys.readouterr().out


def test_inference_table(tmp_path, capsys):
    report = tmp_path / "digits.md"
    assert main(["partition", "digits", "--mode", "inference", "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "search (sequential): per layer" in out or "search (pipeline): per layer" in out
    assert "cycle model:" in out and "speedup vs dp" in out
    assert "| search |" in report.read_text() and (tmp_path / "digits.png").exists()
    assert main(["partition", "alexnet", "--mode", "inference", "--scale-to-fabric", "--no-report",
                 "--preset", "isscc22"]) == 0
    assert "scaled to the fabric: alexnet/c" in capsys.readouterr().out
    # on the default fabric AlexNet's grouped convolutions scale to groups of less than a word: super-groups
    assert main(["partition", "alexnet", "--mode", "inference", "--scale-to-fabric", "--no-report"]) == 0
    assert "search (sequential)" in capsys.readouterr().out


def test_errors_exit_2(capsys):
    assert main(["partition", "nothing_here", "--no-report"]) == 2
    assert "known names" in capsys.readouterr().err
    assert main(["partition", "alexnet", "-n", "6", "--no-report"]) == 2
    assert "power of two" in capsys.readouterr().err


def test_report_that_is_a_directory_is_refused_before_the_work(tmp_path, capsys):
    """--report takes the markdown file's path; a directory was an IsADirectoryError after the whole run."""
    assert main(["partition", "digits", "--report", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "--report" in captured.err and "is a directory" in captured.err
    assert "model " not in captured.out  # refused before the model was loaded
