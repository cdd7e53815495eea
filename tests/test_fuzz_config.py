"""Property-based tests (hypothesis) of the configuration loader (issue 15 item 5): random TOML documents and
field values, and random byte damage to valid files. The only exception allowed is :class:`ConfigError`;
whatever loads is a valid configuration that round-trips through TOML, and the design-size bound
(:func:`cimforge.gen.size.check_generation_size`) judges it with a UserError or not at all.

Derandomized (a fixed seed, printed), 1,000 examples per target, no deadline; the targets are marked slow (CI
runs them, ``make test-fast`` runs only the regression cases).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cimforge.config import (CimConfig, ConfigError, ControllerConfig, FabricConfig, MacroConfig, config_from_dict,
                             load_config, save_config)
from cimforge.errors import UserError

SEED = 15
SETTINGS = settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BLOCKS = {"macro": MacroConfig, "fabric": FabricConfig, "controller": ControllerConfig}


def setup_module():
    print(f"hypothesis: derandomized, seed {SEED}, {SETTINGS.max_examples} examples per target")


# values TOML can hold: numbers near every bound, floats equal to integers, bools, strings, arrays, tables, dates
_near = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 32, 63, 64, 65, 1023, 1024, 1025, 4096, 65536, 65537,
                         16384, 32768, 32769, 1 << 20, 1 << 24, (1 << 26) + 1, -1, -8, 2 ** 63 - 1, -(2 ** 63)])
_scalar = st.one_of(
    _near, st.integers(min_value=-(2 ** 63), max_value=2 ** 63 - 1), _near.map(float),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.text(max_size=8),
    st.sampled_from(["double", "single", "default", "tiny", "désign", "a" * 70, "x_1", ""]),
    st.dates(), st.datetimes())
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3), st.dictionaries(st.text(max_size=4), _scalar, max_size=2))


def _block(cls):
    names = [f.name for f in dataclasses.fields(cls)] + ["bogus", ""]
    return st.dictionaries(st.sampled_from(names), _value, max_size=4)


_document = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(["mine", "tiny", "a_1", "Z9"]), _scalar),
    "macro": st.one_of(_block(MacroConfig), _scalar),
    "fabric": st.one_of(_block(FabricConfig), _scalar),
    "controller": _block(ControllerConfig),
    "extra": _value,
})


def _load(fn, *args) -> CimConfig | None:
    """``fn(*args)``: a configuration, or None after a ConfigError that names a field and what is allowed."""
    try:
        cfg = fn(*args)
    except ConfigError as e:
        assert e.field and "allowed" in str(e)
        return None
    _check_loaded(cfg)
    return cfg


def _check_loaded(cfg: CimConfig) -> None:
    assert isinstance(cfg, CimConfig)
    for block, cls in BLOCKS.items():
        for f in dataclasses.fields(cls):
            v = getattr(getattr(cfg, block), f.name)
            if f.type in ("int", int):
                assert type(v) is int, (block, f.name, v)  # integers are integers (no 8.0, no True)
    assert cfg.name.isascii() and cfg.name.isidentifier()
    from cimforge.gen.size import check_generation_size
    try:
        check_generation_size(cfg)
    except UserError as e:
        assert "too large" in str(e)


@pytest.mark.slow
@SETTINGS
@given(doc=_document)
def test_config_from_random_documents(doc):
    _load(config_from_dict, doc)


@pytest.mark.slow
@SETTINGS
@given(doc=_document, cut=st.integers(min_value=0, max_value=400), junk=st.binary(max_size=6),
       at=st.integers(min_value=0, max_value=400))
def test_load_config_from_damaged_files(tmp_path, doc, cut, junk, at):
    """The document as TOML text, truncated and with random bytes inserted (not UTF-8, broken syntax)."""
    try:
        text = tomli_w.dumps(doc).encode()
    except (TypeError, ValueError):
        text = b'name = "x"\n[macro]\nrows = 8\n'
    data = text[:max(cut, len(text) // 2)]
    data = data[:at] + junk + data[at:]
    path = tmp_path / "c.toml"
    path.write_bytes(data)
    cfg = _load(load_config, path)
    if cfg is None:
        return
    save_config(cfg, tmp_path / "back.toml")
    assert load_config(tmp_path / "back.toml") == cfg


@pytest.mark.parametrize("value", [8.0, True, math.nan, "8", [8]])
def test_regression_float_and_bool_max_wb(value):
    """Issue 15: ``max_wb = 8.0`` passed validation and failed in elaboration (AttributeError)."""
    with pytest.raises(ConfigError, match="macro.max_wb"):
        config_from_dict({"macro": {"max_wb": value}})
