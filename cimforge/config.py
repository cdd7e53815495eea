"""Validated, frozen configuration of a cimforge accelerator: one class per block.

A :class:`CimConfig` gathers the configuration of each hardware block (:class:`MacroConfig`,
:class:`FabricConfig`, :class:`ControllerConfig`). Every field has a default; derived values are properties;
every check runs in ``__post_init__`` and raises :class:`ConfigError` naming the field and the allowed values.
Presets are copies of the defaults with a few fields changed (see :mod:`cimforge.presets`).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import tomli_w

from .bits import ceil_log2, index_bits

__all__ = [
    "ConfigError", "MacroConfig", "FabricConfig", "ControllerConfig", "CimConfig",
    "WEIGHT_BITS", "ACT_BITS", "INT8_BITS", "ROUNDINGS", "DEFAULT_ROUNDING", "load_config", "save_config",
    "config_from_dict", "config_to_dict",
]

#: Weight precisions a macro operation may select (columns per weight).
WEIGHT_BITS = (1, 2, 4, 8)
#: Requantisation rounding forms (see :mod:`cimforge.golden.requant`).
ROUNDINGS = ("double", "single")
#: The form a design builds and the golden model uses unless told otherwise: TFLite's single rounding, the one
#: that meets the agreement bound against onnxruntime (docs/golden.md); gemmlowp's double rounding stays
#: selectable (``fabric.rounding = "double"``).
DEFAULT_ROUNDING = "single"
#: Activation precisions a macro operation may select (bit-serial cycles per operation).
ACT_BITS = tuple(range(1, 9))
#: Bits of the int8 / uint8 codes of quantised tensors: the precision the compiler runs activations and
#: weights at, and the width of an activation lane (:data:`cimforge.gen.isa.LANE_BITS`).
INT8_BITS = 8


class ConfigError(ValueError):
    """An invalid configuration value. The message names the field and the allowed values.

    Parameters
    ----------
    field : str
        Dotted name of the offending field (``macro.rows``).
    value : object
        The value that was given.
    allowed : str
        What would have been accepted.
    """

    def __init__(self, field: str, value: Any, allowed: str):
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"invalid {field} = {value!r}: allowed {allowed}")


def _is_int(value: Any) -> bool:
    """An integer and not a bool: ``8.0`` and ``True`` compare equal to integers, so ``==`` and ``in`` checks
    alone would let them through to elaboration."""
    return isinstance(value, int) and not isinstance(value, bool)


#: A design name: an ASCII identifier (it prefixes every Verilog module and names ``<name>.v``). Non-ASCII letters
#: pass ``str.isalnum`` but become escaped Verilog identifiers that tools cannot find by name; the length bound
#: keeps ``<name>_cim_macro_...`` module and file names far below the file system's 255 bytes.
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def _check_int(block: str, name: str, value: Any, lo: int, hi: int | None = None, extra: str = "") -> None:
    allowed = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
    if extra:
        allowed += f" {extra}"
    if not _is_int(value):
        raise ConfigError(f"{block}.{name}", value, allowed)
    if value < lo or (hi is not None and value > hi):
        raise ConfigError(f"{block}.{name}", value, allowed)


@dataclass(frozen=True)
class MacroConfig:
    """One digital SRAM compute-in-memory macro (docs/architecture.md section 3).

    Parameters
    ----------
    rows : int
        R, the reduction length: activations summed per column per compute cycle (1..1024).
    pages : int
        P, weight wordlines per row position; an operation selects one page (1..64).
    cols : int
        C, bit columns; a multiple of ``max_wb`` (8..1024).
    max_wb : int
        Widest weight precision an operation may select, in {1, 2, 4, 8}. It is also the width of the
        column tile the generator elaborates once and instantiates ``cols // max_wb`` times.
    max_ab : int
        Widest activation precision (bit-serial cycles) an operation may select, 1..8.
    """

    # geometry (the default: 8 pages hold every weight of both digits CNNs, so they stay resident)
    rows: int = 64
    pages: int = 8
    cols: int = 64
    # precision limits (each operation selects wb <= max_wb, ab <= max_ab at run time)
    max_wb: int = 8
    max_ab: int = 8

    def __post_init__(self) -> None:
        _check_int("macro", "rows", self.rows, 1, 1024)
        _check_int("macro", "pages", self.pages, 1, 64)
        if not _is_int(self.max_wb) or self.max_wb not in WEIGHT_BITS:
            raise ConfigError("macro.max_wb", self.max_wb, f"one of {list(WEIGHT_BITS)}")
        _check_int("macro", "max_ab", self.max_ab, ACT_BITS[0], ACT_BITS[-1])
        _check_int("macro", "cols", self.cols, 1, 1024, extra=f"and a multiple of macro.max_wb ({self.max_wb})")
        if self.cols % self.max_wb:
            raise ConfigError("macro.cols", self.cols,
                              f"a multiple of macro.max_wb ({self.max_wb}), e.g. {self.cols + (-self.cols) % self.max_wb}")

    # derived values -------------------------------------------------------------------------------
    @property
    def acc_width(self) -> int:
        """Result width: ``max_ab + max_wb + ceil(log2(rows))``; no operation can overflow it."""
        return self.max_ab + self.max_wb + ceil_log2(self.rows)

    @property
    def tile_cols(self) -> int:
        """Columns per tile (= ``max_wb``): the unit the generator elaborates once."""
        return self.max_wb

    @property
    def n_tiles(self) -> int:
        return self.cols // self.max_wb

    @property
    def bits(self) -> int:
        """Stored bits: ``pages * rows * cols``."""
        return self.pages * self.rows * self.cols

    @property
    def page_width(self) -> int:
        return index_bits(self.pages)

    @property
    def row_width(self) -> int:
        return index_bits(self.rows)

    def weights_per_row(self, wb: int) -> int:
        """How many ``wb``-bit weights one row of a page holds (``cols // wb``)."""
        return self.cols // wb


@dataclass(frozen=True)
class FabricConfig:
    """The tiling fabric around the macros (docs/architecture.md section 4; docs/fabric.md).

    Parameters
    ----------
    n_macros : int
        Number of macros (1..64). A layer uses a power-of-two group of them, split by position (replication,
        data parallel), by input channel (K-split, partial sums added) and by output channel (N-split).
    act_depth : int
        Activation memory words (64..65536). A word holds ``macro.cols // macro.max_wb`` int8 activations (the
        channel lanes: one macro operation's outputs at full weight precision); tensors are stored pixel by
        pixel with their channels padded to whole words.
    weight_depth : int
        Weight memory words of ``macro.cols`` bits (one macro row) the loader copies into macro pages
        (16..65536).
    param_depth : int
        Per-output-channel parameter words (bias, multiplier, shift of one word's lanes) (4..32768: ResNet-50 needs 6765 on 8 lanes, DenseNet-121 17 089).
    desc_depth : int
        Tile descriptor words: how a reduction tile is gathered from the activation memory (4..4096).
    acc_width : int
        Width of the partial-sum adders and requantisation input (32: TFLite int32 accumulators).
    rounding : str
        Requantisation rounding, one of :data:`ROUNDINGS`: ``"single"`` (TFLite's single-rounding form,
        closest to onnxruntime's float rounding: the default, :data:`DEFAULT_ROUNDING`) or ``"double"``
        (gemmlowp's SaturatingRoundingDoublingHighMul then RoundingDivideByPOT, docs/architecture.md section 5).
        The golden model implements both; the RTL builds the one chosen.
    ext_depth : int
        Words of the external memory behind the fabric's AXI4 master port (1024..2**26: VGG-19 needs 20 M), one bus beat each
        (``gen.axi.ext_width(cfg)`` bits: the wider of an activation and a weight word, a power of two). It sets
        the width of the ``DMA`` instruction's external addresses and the size of the simulation model
        (docs/memory.md).
    ext_latency : int
        The external memory's latency in cycles (1..1024): from a read address handshake to the first data beat,
        and from a write's last data beat to its response. Part of the timing contract the cost model predicts
        (docs/memory.md); the simulation model (``gen/extmem.py``) has exactly this latency.
    ext_interval : int
        Cycles per data beat of the external memory (1..64): its bandwidth is one beat every ``ext_interval``
        cycles, in each direction.
    mac_epilogue : bool
        Build the ``MAC`` engine's epilogue (a per-channel affine and second requantisation in the write-back,
        ``MAC.epi``), which runs a BatchNormalization that follows a convolution in that convolution's pass
        (docs/fabric.md section 4). Without it the MAC engine is smaller (its second requantiser and parameter
        port go) and the compiler runs such layers as passes of their own (default true).
    """

    n_macros: int = 4
    # memories
    act_depth: int = 4096
    weight_depth: int = 1024
    param_depth: int = 64
    desc_depth: int = 64
    # arithmetic
    acc_width: int = 32
    rounding: str = DEFAULT_ROUNDING
    # external memory (docs/memory.md)
    ext_depth: int = 1 << 20
    ext_latency: int = 32
    ext_interval: int = 1
    # the MAC engine's epilogue (fused per-channel affine)
    mac_epilogue: bool = True

    def __post_init__(self) -> None:
        _check_int("fabric", "n_macros", self.n_macros, 1, 64)
        if not isinstance(self.mac_epilogue, bool):
            raise ConfigError("fabric.mac_epilogue", self.mac_epilogue, "true or false")
        if not isinstance(self.rounding, str) or self.rounding not in ROUNDINGS:
            raise ConfigError("fabric.rounding", self.rounding, "one of " + ", ".join(ROUNDINGS))
        _check_int("fabric", "act_depth", self.act_depth, 64, 65536)
        _check_int("fabric", "weight_depth", self.weight_depth, 16, 65536)
        _check_int("fabric", "param_depth", self.param_depth, 4, 32768)
        _check_int("fabric", "desc_depth", self.desc_depth, 4, 4096)
        _check_int("fabric", "ext_depth", self.ext_depth, 1024, 1 << 26)
        _check_int("fabric", "ext_latency", self.ext_latency, 1, 1024)
        _check_int("fabric", "ext_interval", self.ext_interval, 1, 64)
        if not _is_int(self.acc_width) or self.acc_width != 32:
            raise ConfigError("fabric.acc_width", self.acc_width, "32 (int32 accumulators, TFLite requantisation)")


@dataclass(frozen=True)
class ControllerConfig:
    """The program-driven controller (docs/architecture.md section 4; docs/fabric.md).

    Parameters
    ----------
    program_depth : int
        Instruction memory words (16..131072; ResNet-50 in row bands is 89 K instructions).
    trace_depth : int
        Retired-instruction trace entries (cycle stamps the host reads to measure each layer) (16..131072).
    load_queue : int
        Weight-load commands the loader queues while compute instructions run (1..64).
    """

    program_depth: int = 1024
    trace_depth: int = 1024
    load_queue: int = 8

    def __post_init__(self) -> None:
        _check_int("controller", "program_depth", self.program_depth, 16, 1 << 17)
        _check_int("controller", "trace_depth", self.trace_depth, 16, 1 << 17)
        _check_int("controller", "load_queue", self.load_queue, 1, 64)


@dataclass(frozen=True)
class CimConfig:
    """A whole accelerator: a name and one configuration per block.

    Parameters
    ----------
    name : str
        Identifier used for file and module names (letters, digits, underscore).
    macro, fabric, controller
        The blocks' configurations.
    """

    name: str = "default"
    macro: MacroConfig = field(default_factory=MacroConfig)
    fabric: FabricConfig = field(default_factory=FabricConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            raise ConfigError("name", self.name, "an ASCII identifier: a letter, then up to 63 letters, digits "
                                                 "or '_' (it names the Verilog modules)")
        for block, cls in (("macro", MacroConfig), ("fabric", FabricConfig), ("controller", ControllerConfig)):
            if not isinstance(getattr(self, block), cls):
                raise ConfigError(block, getattr(self, block), f"a {cls.__name__}")

    def with_macro(self, **changes: Any) -> "CimConfig":
        return replace(self, macro=replace(self.macro, **changes))


_BLOCKS = {"macro": MacroConfig, "fabric": FabricConfig, "controller": ControllerConfig}


def config_to_dict(cfg: CimConfig) -> dict[str, Any]:
    """The configuration as plain data (the TOML and ``params.json`` form)."""
    out: dict[str, Any] = {"name": cfg.name}
    for block in _BLOCKS:
        out[block] = dataclasses.asdict(getattr(cfg, block))
    return out


def config_from_dict(data: dict[str, Any], base: CimConfig | None = None) -> CimConfig:
    """Build a :class:`CimConfig` from plain data; missing fields keep ``base``'s (default) values.

    Raises
    ------
    ConfigError
        Unknown sections or fields, or invalid values.
    """
    base = base or CimConfig()
    if not isinstance(data, dict):
        raise ConfigError("<config>", type(data).__name__, "a table with sections " + ", ".join(_BLOCKS))
    unknown = set(data) - {"name", *_BLOCKS}
    if unknown:
        raise ConfigError(sorted(unknown)[0], data[sorted(unknown)[0]], "a section among: name, " + ", ".join(_BLOCKS))
    blocks = {}
    for block, cls in _BLOCKS.items():
        section = data.get(block, {})
        if not isinstance(section, dict):
            raise ConfigError(block, section, "a table of fields")
        names = {f.name for f in fields(cls)}
        for key in section:
            if key not in names:
                raise ConfigError(f"{block}.{key}", section[key], f"a field among: {', '.join(sorted(names))}")
        blocks[block] = replace(getattr(base, block), **section)
    return CimConfig(name=data.get("name", base.name), **blocks)


def load_config(path: str | Path) -> CimConfig:
    """Read a TOML configuration file.

    Raises
    ------
    ConfigError
        The file is missing, is not valid TOML, or holds invalid fields.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError("config file", str(path), f"a readable TOML file ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError("config file", str(path), f"a UTF-8 TOML file (byte {e.object[e.start]:#04x} at offset "
                                                    f"{e.start} is not UTF-8)") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("config file", str(path), f"valid TOML ({e})") from None
    return config_from_dict(data)


def save_config(cfg: CimConfig, path: str | Path) -> None:
    """Write ``cfg`` as TOML (readable back by :func:`load_config`)."""
    Path(path).write_text(tomli_w.dumps(config_to_dict(cfg)))
