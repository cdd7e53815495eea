"""Configuration: validation names the field and the allowed values; presets and TOML round-trip."""

from __future__ import annotations

import pytest

from cimforge import CimConfig, ConfigError, MacroConfig, get_preset, load_config, save_config
from cimforge.presets import PRESETS


@pytest.mark.parametrize("kwargs, field, allowed", [
    ({"rows": 0}, "macro.rows", "1..1024"),
    ({"rows": -4}, "macro.rows", "1..1024"),
    ({"pages": 0}, "macro.pages", "1..64"),
    ({"cols": 0}, "macro.cols", "1..1024"),
    ({"cols": 20}, "macro.cols", "multiple of macro.max_wb (8)"),
    ({"cols": 6, "max_wb": 4}, "macro.cols", "multiple of macro.max_wb (4)"),
    ({"max_wb": 3}, "macro.max_wb", "[1, 2, 4, 8]"),
    ({"max_wb": 16}, "macro.max_wb", "[1, 2, 4, 8]"),
    ({"max_ab": 0}, "macro.max_ab", "1..8"),
    ({"max_ab": 9}, "macro.max_ab", "1..8"),
    ({"rows": 2.5}, "macro.rows", "an integer"),
    ({"rows": True}, "macro.rows", "an integer"),
])
def test_bad_macro_values_name_field_and_allowed(kwargs, field, allowed):
    with pytest.raises(ConfigError) as err:
        MacroConfig(**kwargs)
    assert err.value.field == field
    assert field in str(err.value) and allowed in str(err.value)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="allowed one of tiny, default, isscc22"):
        get_preset("huge")


def test_isscc22_is_the_published_organisation():
    m = get_preset("isscc22").macro
    assert (m.rows, m.pages, m.cols, m.max_wb, m.max_ab) == (32, 16, 64, 8, 8)
    assert m.acc_width == 21 and m.bits == 32 * 1024


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_through_toml(name, tmp_path):
    cfg = get_preset(name)
    save_config(cfg, tmp_path / "c.toml")
    assert load_config(tmp_path / "c.toml") == cfg


def test_partial_toml_keeps_defaults(tmp_path):
    (tmp_path / "c.toml").write_text('name = "mine"\n[macro]\nrows = 16\n')
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.name == "mine" and cfg.macro.rows == 16 and cfg.macro.cols == CimConfig().macro.cols


@pytest.mark.parametrize("text, field", [
    ("[macro]\nrows = 0\n", "macro.rows"),
    ("[macro]\nrowz = 3\n", "macro.rowz"),
    ("[macroo]\nrows = 3\n", "macroo"),
    ('name = "has space"\n', "name"),
    ("[macro\nrows = 3\n", "config file"),
    ("macro = 3\n", "macro"),
])
def test_bad_toml_names_the_field(text, field, tmp_path):
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.toml")
    assert err.value.field == field, str(err.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="readable TOML file"):
        load_config(tmp_path / "nope.toml")


def test_cli_reports_bad_config_without_traceback(tmp_path, capsys):
    from cimforge.cli import main
    (tmp_path / "c.toml").write_text("[macro]\ncols = 12\n")
    assert main(["generate", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "macro.cols" in err and "multiple of macro.max_wb" in err
    assert not (tmp_path / "o").exists(), "a failed generation must not leave output behind"
    assert main(["generate", "--preset", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "preset" in capsys.readouterr().err


def test_bad_rounding_names_the_allowed_forms():
    from cimforge import FabricConfig
    with pytest.raises(ConfigError) as err:
        FabricConfig(rounding="nearest")
    assert err.value.field == "fabric.rounding" and "double, single" in str(err.value)


def test_bit_width_helpers():
    """cimforge.bits: the one home of the log2 helpers that size fields and counters."""
    from cimforge.bits import ceil_log2, count_bits, exact_log2, index_bits
    assert [ceil_log2(n) for n in (0, 1, 2, 3, 4, 5, 64, 65)] == [0, 0, 1, 2, 2, 3, 6, 7]
    assert [index_bits(n) for n in (1, 2, 3, 4, 64, 65, 4096)] == [1, 1, 2, 2, 6, 7, 12]
    assert [count_bits(n) for n in (0, 1, 2, 7, 8, 64)] == [1, 1, 2, 3, 4, 7]
    assert [exact_log2(n) for n in (1, 2, 4, 8, 1024)] == [0, 1, 2, 3, 10]
    for bad in (0, 3, 6, -2, True, 2.0):
        with pytest.raises(ValueError, match="not a power of two"):
            exact_log2(bad)
    m = MacroConfig(rows=63, pages=5)
    assert (m.page_width, m.row_width, m.acc_width) == (3, 6, m.max_ab + m.max_wb + 6)


def test_precision_constants():
    from cimforge.config import ACT_BITS, INT8_BITS, WEIGHT_BITS
    from cimforge.gen.isa import LANE_BITS
    assert ACT_BITS == tuple(range(1, 9)) and WEIGHT_BITS == (1, 2, 4, 8)
    assert INT8_BITS == LANE_BITS == 8 and INT8_BITS in ACT_BITS and INT8_BITS in WEIGHT_BITS


@pytest.mark.parametrize("block, kwargs, field", [
    ("macro", {"max_wb": 8.0}, "macro.max_wb"),      # 8.0 == 8 and 8.0 in (1, 2, 4, 8): equality alone passes it
    ("macro", {"max_wb": True}, "macro.max_wb"),     # True == 1
    ("macro", {"max_ab": 8.0}, "macro.max_ab"),
    ("fabric", {"acc_width": 32.0}, "fabric.acc_width"),
    ("fabric", {"n_macros": True}, "fabric.n_macros"),
    ("fabric", {"rounding": ["single"]}, "fabric.rounding"),
    ("controller", {"load_queue": 8.0}, "controller.load_queue"),
])
def test_integers_are_integers(block, kwargs, field):
    """Issue 15, class "integers are integers": a float or a bool equal to an allowed value is refused by name."""
    from cimforge import ControllerConfig, FabricConfig
    cls = {"macro": MacroConfig, "fabric": FabricConfig, "controller": ControllerConfig}[block]
    with pytest.raises(ConfigError) as err:
        cls(**kwargs)
    assert err.value.field == field, str(err.value)


@pytest.mark.parametrize("name", ["désign", "Ω", "a" * 65, "9lives", "_x", "a-b", ""])
def test_design_names_are_ascii_identifiers(name):
    """Non-ASCII names gave escaped Verilog identifiers that lint could not find; too long names too long files."""
    with pytest.raises(ConfigError, match="ASCII identifier") as err:
        CimConfig(name=name)
    assert err.value.field == "name"
    assert CimConfig(name="a" * 64).name == "a" * 64


def test_config_file_not_utf8_is_a_config_error(tmp_path):
    (tmp_path / "c.toml").write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="UTF-8") as err:
        load_config(tmp_path / "c.toml")
    assert err.value.field == "config file" and "0xe9" in str(err.value)
