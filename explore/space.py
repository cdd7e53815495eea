"""The design space of ``cimforge explore``: a TOML file of ranges or lists over configuration fields, and
constraints over them.

A space file (docs/explore.md has the whole format)::

    base = "default"                  # a preset, or base_config = "FILE.toml" (relative to the space file)

    [fields]                          # dotted configuration fields: a list of values, or a range
    macro.rows = [32, 64]
    macro.pages = { min = 4, max = 16, times = 2 }     # 4, 8, 16
    fabric.n_macros = { min = 1, max = 4 }              # 1, 2, 3, 4 (step 1)
    fabric.rounding = ["single", "double"]

    constraints = ["macro.rows * macro.pages <= 1024"]   # Python-like expressions over the fields

    [search]                          # optional
    method = "auto"                   # auto | exhaustive | nsga2
    exhaustive_max = 64               # auto: exhaustive up to this many points
    trials = 48                       # nsga2: points evaluated
    population = 12
    seed = 0

    [rtl]                             # optional
    fraction = 0.1                    # of the points run on the RTL (at least one per run)
    images = 2

Every point is a whole :class:`~cimforge.config.CimConfig`, validated by the configuration's own checks. A
point that a check refuses (``macro.cols`` not a multiple of ``macro.max_wb``, say) is kept with the reason and
not evaluated; a space with no valid point, an unknown field, an empty range or a constraint that no point
meets is a :class:`~cimforge.errors.UserError` naming it.
"""

from __future__ import annotations

import ast
import hashlib
import itertools
import json
import math
import operator
import re
import tomllib
from dataclasses import dataclass, field, fields as dc_fields
from pathlib import Path
from typing import Any

from ..config import CimConfig, ConfigError, ControllerConfig, FabricConfig, MacroConfig, config_from_dict, \
    config_to_dict
from ..errors import UserError

__all__ = ["Space", "Point", "load_space", "parse_space", "point_name", "config_key", "FIELDS", "SEARCH_METHODS"]

#: The fields a space may vary: block -> field names (every field of the configuration's blocks).
FIELDS: dict[str, tuple[str, ...]] = {
    "macro": tuple(f.name for f in dc_fields(MacroConfig)),
    "fabric": tuple(f.name for f in dc_fields(FabricConfig)),
    "controller": tuple(f.name for f in dc_fields(ControllerConfig)),
}
SEARCH_METHODS = ("auto", "exhaustive", "nsga2")
_TOP_KEYS = ("base", "base_config", "fields", "constraints", "search", "rtl", "name")
_SEARCH_KEYS = {"method": str, "exhaustive_max": int, "trials": int, "population": int, "seed": int}
_RTL_KEYS = {"fraction": (int, float), "images": int}
#: Points a space may name at most (its product is enumerated for exhaustive search and for NSGA-II's sampling).
MAX_POINTS = 1_000_000


def config_key(cfg: CimConfig) -> str:
    """A hash of everything in ``cfg`` but its name: equal designs have equal keys whatever they are called."""
    data = config_to_dict(cfg)
    data.pop("name")
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def point_name(cfg: CimConfig) -> str:
    """The name a point's configuration gets: ``x`` and 12 hex digits of :func:`config_key` (an identifier, so
    it names Verilog modules; equal designs get equal names, so their Verilog and its caches are shared)."""
    return "x" + config_key(cfg)[:12]


@dataclass(frozen=True)
class Point:
    """One point of a space: the values of the varied fields, and the configuration they make (or why not).

    Attributes
    ----------
    values : tuple of (str, object)
        ``(dotted field, value)`` per axis, in the space's axis order.
    config : CimConfig or None
        The validated configuration (named by :func:`point_name`); None when invalid.
    invalid : str or None
        The configuration check's message when the values do not make a valid configuration.
    """

    values: tuple
    config: CimConfig | None
    invalid: str | None = None

    @property
    def key(self) -> str:
        """:func:`config_key` of the configuration (of the values when invalid)."""
        if self.config is not None:
            return config_key(self.config)
        return hashlib.sha256(json.dumps(self.values).encode()).hexdigest()

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values)


@dataclass
class Space:
    """A parsed space file.

    Attributes
    ----------
    base : CimConfig
        What every point starts from.
    axes : dict of str to list
        Dotted field -> the values it takes, in order (two or more: a field given one value is part of
        ``base``).
    constraints : list of str
        Expressions every point must meet.
    search, rtl : dict
        The ``[search]`` and ``[rtl]`` settings, defaults filled in.
    """

    base: CimConfig
    axes: dict[str, list]
    constraints: list[str] = field(default_factory=list)
    search: dict = field(default_factory=dict)
    rtl: dict = field(default_factory=dict)
    name: str = "space"
    _compiled: list = field(default_factory=list, repr=False)

    @property
    def size(self) -> int:
        """Points of the product before constraints."""
        return math.prod(len(v) for v in self.axes.values())

    def make_point(self, values: tuple) -> Point:
        """The :class:`Point` of ``values`` (one per axis), validated by the configuration's checks."""
        data = config_to_dict(self.base)
        for dotted, value in values:
            block, name = dotted.split(".")
            data[block][name] = value
        try:
            cfg = config_from_dict(data)
        except ConfigError as e:
            return Point(tuple(values), None, str(e))
        return Point(tuple(values), config_from_dict({**data, "name": point_name(cfg)}))

    def meets(self, values: tuple) -> bool:
        """Whether ``values`` meet every constraint."""
        env = self._env(values)
        return all(_evaluate(tree, env, text) for text, tree in self._compiled)

    def _env(self, values: tuple) -> dict:
        env = {block: dict(vals) for block, vals in config_to_dict(self.base).items() if block != "name"}
        for dotted, value in values:
            block, name = dotted.split(".")
            env[block][name] = value
        return env

    def value_tuples(self):
        """Every combination of the axes, in order (last axis fastest)."""
        names = list(self.axes)
        for combo in itertools.product(*self.axes.values()):
            yield tuple(zip(names, combo))

    def points(self) -> list[Point]:
        """Every point of the product that meets the constraints (valid or not), in order."""
        return [self.make_point(v) for v in self.value_tuples() if self.meets(v)]


# -- parsing -----------------------------------------------------------------------------------------------------

def load_space(path: str | Path, option: str = "--space") -> Space:
    """Read and check a space file.

    Raises
    ------
    UserError
        The file is missing or not TOML, or names an unknown key or field, an empty range, a bad value, or a
        constraint that no point meets (the message names it).
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as e:
        raise UserError(f"{option} {str(p)!r}: cannot read it ({e.strerror}); allowed a TOML space file") from None
    except UnicodeDecodeError:
        raise UserError(f"{option} {str(p)!r}: not UTF-8 text; allowed a TOML space file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{option} {str(p)!r}: not valid TOML ({e})") from None
    return parse_space(data, where=p.parent, name=p.stem)


def _space_name(name) -> str:
    """The space's ``name``: it names the report folder below the report root, so a path ("../../x", "/tmp/x")
    would write the report anywhere."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise UserError(f"name = {name!r}: allowed letters, digits, '_', '.' and '-', not starting with '.' or '-' "
                        f"(it names the report folder)")
    return name


def parse_space(data: dict, *, where: Path | None = None, name: str = "space") -> Space:
    """A :class:`Space` from the parsed TOML ``data`` (``where``: the folder ``base_config`` is relative to).

    Raises
    ------
    UserError
        As :func:`load_space`.
    """
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise UserError(f"space key {unknown[0]!r}: allowed {', '.join(_TOP_KEYS)}")
    base = _base(data, where)
    axes = _axes(data.get("fields"))
    base = _fix(base, {k: v[0] for k, v in axes.items() if len(v) == 1})
    axes = {k: v for k, v in axes.items() if len(v) > 1}
    constraints = data.get("constraints", [])
    if isinstance(constraints, str):
        constraints = [constraints]
    if not isinstance(constraints, list) or not all(isinstance(c, str) for c in constraints):
        raise UserError(f"constraints = {constraints!r}: allowed a list of expression strings")
    space = Space(base, axes, list(constraints), _settings("search", data.get("search", {}), _SEARCH_KEYS),
                  _settings("rtl", data.get("rtl", {}), _RTL_KEYS), _space_name(data.get("name", name)))
    _check_settings(space)
    if space.size > MAX_POINTS:
        raise UserError(f"fields: the space has {space.size:,} points; allowed at most {MAX_POINTS:,} "
                        "(narrow a range)")
    space._compiled = [(text, _compile(text)) for text in constraints]
    _check_constraints(space)
    return space


def _base(data: dict, where: Path | None) -> CimConfig:
    from ..presets import PRESETS
    if "base" in data and "base_config" in data:
        raise UserError("base and base_config: allowed one of them")
    if "base_config" in data:
        from ..config import load_config
        path = Path(data["base_config"])
        if where is not None and not path.is_absolute():
            path = where / path
        if not path.is_file():
            raise UserError(f"base_config {str(path)!r}: no such file; allowed a TOML configuration file")
        return load_config(path)
    name = data.get("base", "default")
    if name not in PRESETS:
        raise UserError(f"base = {name!r}: allowed one of {', '.join(PRESETS)} (or base_config = FILE)")
    return PRESETS[name]


def _fix(base: CimConfig, fixed: dict) -> CimConfig:
    """``base`` with the fields that take one value in the space set to it (they are no axes: a point's label
    and the search see only what varies)."""
    if not fixed:
        return base
    data = config_to_dict(base)
    for dotted, value in fixed.items():
        block, name = dotted.split(".")
        data[block][name] = value
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise UserError(f"fields.{e.field}: {e}") from None


def _axes(section) -> dict[str, list]:
    if not isinstance(section, dict) or not section:
        raise UserError("fields: no field varies; allowed a [fields] table such as macro.rows = [32, 64]")
    axes: dict[str, list] = {}
    for block, entries in section.items():
        if block not in FIELDS:
            hint = " (top-level keys such as constraints go before the first [table])" if block in _TOP_KEYS else ""
            raise UserError(f"fields.{block}: unknown block; allowed {', '.join(FIELDS)} (e.g. macro.rows){hint}")
        if not isinstance(entries, dict):
            raise UserError(f"fields.{block} = {entries!r}: allowed dotted fields such as {block}.{FIELDS[block][0]}")
        for fname, spec in entries.items():
            dotted = f"{block}.{fname}"
            if fname not in FIELDS[block]:
                raise UserError(f"fields.{dotted}: unknown field; allowed {', '.join(f'{block}.{f}' for f in FIELDS[block])}")
            axes[dotted] = _values(dotted, spec)
    return axes


def _values(dotted: str, spec) -> list:
    """The values of one axis: a list, a range ``{min, max[, step]}`` or ``{min, max, times}``, or one value."""
    if isinstance(spec, list):
        if not spec:
            raise UserError(f"fields.{dotted} = []: empty list; allowed at least one value")
        out = []
        for v in spec:
            if v not in out:  # a repeated value is the same point
                out.append(v)
        return out
    if isinstance(spec, dict):
        keys = set(spec)
        allowed = ({"min", "max"}, {"min", "max", "step"}, {"min", "max", "times"})
        if keys not in allowed:
            raise UserError(f"fields.{dotted} = {spec!r}: allowed a list, {{min, max}}, {{min, max, step}} or "
                            "{min, max, times}")
        lo, hi = spec["min"], spec["max"]
        for k, v in spec.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"fields.{dotted}.{k} = {v!r}: allowed an integer")
        if lo > hi:
            raise UserError(f"fields.{dotted}: empty range min = {lo} > max = {hi}; allowed min <= max")
        if "times" in spec:
            t = spec["times"]
            if t < 2 or lo < 1:
                raise UserError(f"fields.{dotted}: times = {t}, min = {lo}: allowed times >= 2 and min >= 1")
            out, v = [], lo
            while v <= hi:
                out.append(v)
                v *= t
            return out
        step = spec.get("step", 1)
        if step < 1:
            raise UserError(f"fields.{dotted}.step = {step}: allowed an integer >= 1")
        return list(range(lo, hi + 1, step))
    if isinstance(spec, (int, float, str)) and not isinstance(spec, bool):
        return [spec]
    raise UserError(f"fields.{dotted} = {spec!r}: allowed a list of values or a range {{min, max[, step|times]}}")


def _settings(section: str, given, keys: dict) -> dict:
    if not isinstance(given, dict):
        raise UserError(f"[{section}] = {given!r}: allowed a table with {', '.join(keys)}")
    for k, v in given.items():
        if k not in keys:
            raise UserError(f"{section}.{k}: unknown setting; allowed {', '.join(keys)}")
        if isinstance(v, bool) or not isinstance(v, keys[k]):
            kind = keys[k].__name__ if isinstance(keys[k], type) else "a number"
            raise UserError(f"{section}.{k} = {v!r}: allowed {kind}")
    return dict(given)


def _check_settings(space: Space) -> None:
    s = space.search
    s.setdefault("method", "auto")
    s.setdefault("exhaustive_max", 64)
    s.setdefault("trials", 48)
    s.setdefault("population", 12)
    s.setdefault("seed", 0)
    if s["method"] not in SEARCH_METHODS:
        raise UserError(f"search.method = {s['method']!r}: allowed {', '.join(SEARCH_METHODS)}")
    for k, lo in (("exhaustive_max", 1), ("trials", 1), ("population", 2), ("seed", 0)):
        if s[k] < lo:
            raise UserError(f"search.{k} = {s[k]}: allowed an integer >= {lo}")
    r = space.rtl
    r.setdefault("fraction", 0.05)
    r.setdefault("images", 2)
    if not 0 < r["fraction"] <= 1:
        raise UserError(f"rtl.fraction = {r['fraction']}: allowed a number in (0, 1] (at least one point per run)")
    if r["images"] < 1:
        raise UserError(f"rtl.images = {r['images']}: allowed an integer >= 1")


# -- constraints: a small safe expression language over the fields ---------------------------------------------

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
           ast.Mod: operator.mod, ast.Pow: operator.pow, ast.Div: operator.truediv}
#: The largest exponent a constraint's ``**`` may take (sizes of a design are far below 2**64).
MAX_EXPONENT = 64
_CMPOPS = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
           ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b}
_FUNCS = {"min": min, "max": max, "abs": abs}


def _compile(text: str) -> ast.AST:
    """Parse constraint ``text`` and check that it uses only arithmetic, comparisons, ``and``/``or``/``not``,
    ``min``/``max``/``abs``, literals and ``block.field`` names."""
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        raise UserError(f"constraint {text!r}: not an expression ({e.msg})") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            if not isinstance(node.value, ast.Name) or node.value.id not in FIELDS:
                raise UserError(f"constraint {text!r}: {ast.unparse(node)!r} is not a field; allowed block.field "
                                f"with block in {', '.join(FIELDS)}")
            if node.attr not in FIELDS[node.value.id]:
                raise UserError(f"constraint {text!r}: unknown field {node.value.id}.{node.attr}; allowed "
                                f"{', '.join(f'{node.value.id}.{f}' for f in FIELDS[node.value.id])}")
        elif isinstance(node, ast.Name):
            if node.id not in FIELDS and node.id not in _FUNCS:
                raise UserError(f"constraint {text!r}: unknown name {node.id!r}; allowed block.field names and "
                                f"{', '.join(_FUNCS)}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                raise UserError(f"constraint {text!r}: call {ast.unparse(node)!r}; allowed {', '.join(_FUNCS)}")
        elif not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Constant, ast.Tuple,
                                   ast.List, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop)):
            raise UserError(f"constraint {text!r}: {type(node).__name__} is not allowed; allowed arithmetic, "
                            "comparisons, and/or/not, min/max/abs over block.field names")
        if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
            raise UserError(f"constraint {text!r}: operator {type(node.op).__name__} is not allowed")
    return tree


def _evaluate(node: ast.AST, env: dict, text: str) -> Any:
    ev = lambda n: _evaluate(n, env, text)  # noqa: E731
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute):
        return env[node.value.id][node.attr]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [ev(e) for e in node.elts]
    if isinstance(node, ast.BoolOp):
        vals = (ev(v) for v in node.values)
        return all(vals) if isinstance(node.op, ast.And) else any(vals)
    if isinstance(node, ast.UnaryOp):
        v = ev(node.operand)
        return {ast.Not: operator.not_, ast.USub: operator.neg, ast.UAdd: operator.pos,
                ast.Invert: operator.invert}[type(node.op)](v)
    if isinstance(node, ast.BinOp):
        left, right = ev(node.left), ev(node.right)
        if isinstance(node.op, ast.Pow) and not (isinstance(right, (int, float)) and abs(right) <= MAX_EXPONENT
                                                 and abs(left) <= 2 ** 64):
            # 10**10**10 would compute for hours before any point is judged
            raise UserError(f"constraint {text!r}: power {ast.unparse(node)!r}: allowed an exponent of at most "
                            f"{MAX_EXPONENT} and a base of at most 2**64")
        try:
            return _BINOPS[type(node.op)](left, right)
        except (TypeError, ZeroDivisionError) as e:
            raise UserError(f"constraint {text!r}: {e}") from None
    if isinstance(node, ast.Compare):
        left = ev(node.left)
        for op, comp in zip(node.ops, node.comparators):
            right = ev(comp)
            try:
                if not _CMPOPS[type(op)](left, right):
                    return False
            except TypeError as e:
                raise UserError(f"constraint {text!r}: {e}") from None
            left = right
        return True
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](*[ev(a) for a in node.args])
    raise UserError(f"constraint {text!r}: cannot evaluate {ast.unparse(node)!r}")


def _check_constraints(space: Space) -> None:
    """Every constraint must leave some point (checked one after another, so the message names the constraint
    that empties the space), and some point must make a valid configuration."""
    alive = list(space.value_tuples())
    for text, tree in space._compiled:
        alive = [v for v in alive if _evaluate(tree, space._env(v), text)]
        if not alive:
            raise UserError(f"constraint {text!r}: no point of the space meets it (with the constraints before it); "
                            f"allowed a constraint some of the {space.size} points meet")
    invalid = [space.make_point(v) for v in alive[:1000]]
    if all(p.config is None for p in invalid) and len(alive) <= 1000:
        raise UserError(f"fields: no point makes a valid configuration (first: {invalid[0].label}: "
                        f"{invalid[0].invalid})")
