"""The models of an exploration: what ``--model`` names, its identity for the result cache, and its test inputs.

``--model`` takes a committed digits model by name (``digits_cnn_qop``, ...), a model of the MLPerf Tiny set by
name (``resnet8``, ``ds_cnn``, ``mobilenet_v1_025``, ``autoencoder``, built reproducibly and cached by
:mod:`cimforge.golden.model_sets`), ``tiny`` for all four, or a quantized ONNX file. A model travels to the
workers as its ONNX bytes, so a remote cluster needs no shared file system; its identity in the result cache is
the SHA-256 of those bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

__all__ = ["ModelRef", "resolve_models", "TINY_ALIAS"]

#: ``--model tiny``: every model of the MLPerf Tiny set.
TINY_ALIAS = "tiny"
#: Imported graphs kept per process, by (digest, label).
_GRAPH_CACHE = 16
_GRAPHS: dict = {}


@dataclass(frozen=True)
class ModelRef:
    """One model of an exploration.

    Attributes
    ----------
    label : str
        The name reports use (the name given, or the file's stem).
    onnx : bytes
        The quantized ONNX model.
    kind : str
        ``"digits"`` (committed digits model: RTL checks use digits test images), ``"tiny"`` (model set: its
        seeded sample inputs) or ``"file"`` (seeded random inputs).
    """

    label: str
    onnx: bytes
    kind: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.onnx).hexdigest()

    def graph(self):
        """The model as a layer-IR graph (imported from the bytes once per process: the compiler and the
        cost model only read it, and a worker evaluates the same models for every point)."""
        key = (self.digest, self.label)
        if key not in _GRAPHS:
            from ..golden.onnx_import import load_onnx
            if len(_GRAPHS) >= _GRAPH_CACHE:
                _GRAPHS.pop(next(iter(_GRAPHS)))
            _GRAPHS[key] = load_onnx(self.onnx, name=self.label)
        return _GRAPHS[key]

    def inputs(self, graph, n: int, seed: int = 0) -> np.ndarray:
        """``n`` test inputs for RTL checks: digits test images, the model set's seeded samples, or seeded
        random inputs."""
        if self.kind == "digits":
            from ..golden.datasets import load_digits_split
            return load_digits_split().x_test[:n]
        if self.kind == "tiny":
            from ..golden.model_sets import sample_inputs
            return sample_inputs(self.label, n, seed=seed)
        from ..golden.cli import random_inputs
        return random_inputs(graph, n, seed)


def resolve_models(names: list[str], option: str = "--model") -> list[ModelRef]:
    """The :class:`ModelRef` of each name (``tiny`` expands to the MLPerf Tiny set); repeated models once.

    Raises
    ------
    UserError
        A name that is neither a known model nor an ONNX file (the message lists the names allowed).
    """
    from ..golden.cli import committed_models
    from ..golden.datasets import MODELS_DIR
    from ..golden.model_sets import TINY_SET, build

    out: list[ModelRef] = []
    seen: set[str] = set()
    digits = committed_models()
    for name in names:
        text = str(name)
        expanded = list(TINY_SET) if text == TINY_ALIAS else [text]
        for item in expanded:
            if item in digits:
                ref = ModelRef(item, (MODELS_DIR / f"{item}.onnx").read_bytes(), "digits")
            elif item in TINY_SET:
                ref = ModelRef(item, Path(build(item)).read_bytes(), "tiny")
            elif item.lower().endswith(".onnx") or Path(item).exists():
                p = Path(item)
                if not p.is_file():
                    raise UserError(f"{option} {item!r}: no such file (allowed a quantized .onnx file, "
                                    f"{TINY_ALIAS}, or one of {', '.join([*digits, *TINY_SET])})")
                ref = ModelRef(p.stem, p.read_bytes(), "file")
                ref.graph()  # a file that does not import is the user's error, named now, not on a worker
            else:
                raise UserError(f"{option} {item!r}: allowed a quantized .onnx file, {TINY_ALIAS} (the MLPerf Tiny "
                                f"set), or one of {', '.join([*digits, *TINY_SET])}")
            if ref.digest not in seen:
                seen.add(ref.digest)
                out.append(ref)
    return out
