"""A compiled program: instruction words, memory images, and the symbol tables that map them back to the
network (tensor placement, which instruction belongs to which layer, which macro computed which output).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import CimConfig
from ..gen.isa import lanes, pack_lanes_array, unpack_lanes_array

__all__ = ["TensorPlace", "InstrInfo", "MacPass", "Program"]


@dataclass(frozen=True)
class TensorPlace:
    """Where one image's tensor lives in the activation memory.

    ``shape`` is the IR's per-sample shape; ``phys`` the stored ``(C, H, W)`` (a vector ``(F,)`` is stored as
    ``(F, 1, 1)``, a flattened tensor keeps its source's ``phys``); ``cw`` words per pixel. A ``rowpack``
    tensor (one channel, at most ``lanes`` wide) is stored one word per row instead, lane ``x`` = pixel ``x``.
    """

    name: str
    image: int
    shape: tuple[int, ...]
    phys: tuple[int, int, int]
    base: int
    cw: int
    dtype: str
    rowpack: bool = False

    @property
    def words(self) -> int:
        return self.phys[1] if self.rowpack else self.phys[1] * self.phys[2] * self.cw


@dataclass
class MacPass:
    """One ``MAC`` instruction of a weighted layer (all positions, a range of output-channel tiles).

    Attributes
    ----------
    layer : str
    geom : ConvGeom
    par : Parallelism
    tiles : list of KTile
        The layer's reduction tiles.
    n_base, nt : int
        First output-channel tile and how many this pass computes.
    kr, nr : int
        Reduction and output-channel rounds per position.
    page_base : int
    loads : list of dict
        ``LOAD`` arguments (src, count, mask, page, row0) that fill the pass's pages.
    desc_base, param_base : int
    image, images : int
        The first image the pass computes and how many (positions of image ``image + i`` follow those of
        ``image + i - 1``).
    """

    layer: str
    geom: object
    par: object
    tiles: list
    n_base: int
    nt: int
    kr: int
    nr: int
    page_base: int = 0
    loads: list = field(default_factory=list)
    desc_base: int = 0
    param_base: int = 0
    role_base: int = 0
    image: int = 0
    images: int = 1
    group: int = 0
    in_off: int = 0
    out_off: int = 0
    #: The whole layer's geometry when this pass computes a row band of it (``geom`` is the band's), else None.
    full_geom: object = None
    #: The band's first output row (0 for a whole layer).
    row0: int = 0

    @property
    def layer_geom(self):
        """The geometry of the whole layer (group): ``full_geom`` for a band's pass, else ``geom``."""
        return self.geom if self.full_geom is None else self.full_geom

    @property
    def npos(self) -> int:
        """Output positions the pass walks: every position of each of its images."""
        return self.geom.npos * self.images

    @property
    def image_label(self) -> int | None:
        """The image of a one-image pass; None for a pass over several."""
        return self.image if self.images == 1 else None

    @property
    def pages(self) -> int:
        return self.kr * self.nr

    @property
    def macros(self) -> int:
        return self.par.batch * self.par.in_ch * self.par.out_ch

    def macro_of(self, position: int, k_tile: int, n_tile: int) -> int:
        """The macro that computes reduction tile ``k_tile`` of output-channel tile ``n_tile`` (both absolute)
        at output ``position`` of the pass (image ``image + i``'s position ``p`` is ``i * geom.npos + p``)."""
        p = self.par
        nl = n_tile - self.n_base
        bi, kk, nn = position % p.batch, k_tile % p.in_ch, nl % p.out_ch
        return (bi * p.in_ch + kk) * p.out_ch + nn

    def page_of(self, k_tile: int, n_tile: int) -> int:
        nl = n_tile - self.n_base
        return self.page_base + (nl // self.par.out_ch) * self.kr + k_tile // self.par.in_ch


@dataclass
class InstrInfo:
    """What an instruction word is for (reports, hang messages)."""

    pc: int
    op: str
    layer: str | None
    image: int | None
    text: str

    def __str__(self) -> str:
        where = f" layer {self.layer!r}" if self.layer else ""
        img = f" image {self.image}" if self.image is not None else ""
        return f"pc {self.pc}: {self.op}{where}{img} ({self.text})"


@dataclass
class Program:
    """Everything the host loads into the fabric, and how to read the results back.

    Attributes
    ----------
    cfg : CimConfig
    graph : Graph
    batch : int
        Images per run.
    code : list of int
        Instruction words.
    wmem, pmem, dmem : list of int
        Weight, parameter and descriptor memory images (from address 0).
    tensors : dict
        ``(image, tensor name) -> TensorPlace``.
    instrs : list of InstrInfo
    passes : list of MacPass
        Per image, in execution order.
    layer_instrs : dict
        ``layer name -> list of pcs`` (image 0's), the instructions whose retire times measure the layer.
    resident : bool
        All weights are loaded once by the prologue (else they stream, layer by layer).
    prologue : list of int
        pcs of the prologue (weight loads before the first image).
    pass_at : dict
        ``pc -> MacPass`` of every ``MAC`` instruction.
    options : dict
        Compile options the program was built with (``stream``, ``memory``).
    external : bool
        Graph tensors live in the external memory (``TensorPlace.base`` is then an external word address; the
        activation memory only stages row bands, docs/memory.md section 8); else in the activation memory.
    ext_init : dict
        External memory words the host loads before a run besides the inputs (``{address: word}``: the weights
        when they do not fit the weight memory).
    kept : set of str or None
        With the activation memory allocated by liveness (``memory="liveness"``), the tensors whose words no
        later tensor reuses, which the host can read back after a run; None: every tensor.
    access : dict
        External mode: ``pc -> (reads, writes)`` activation ranges ``[(base, words), ...]`` of each compute
        instruction (:func:`cimforge.compiler.memory.check_hazards`).
    """

    cfg: CimConfig
    graph: object
    batch: int
    code: list = field(default_factory=list)
    wmem: list = field(default_factory=list)
    pmem: list = field(default_factory=list)
    dmem: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)
    instrs: list = field(default_factory=list)
    passes: list = field(default_factory=list)
    resident: bool = True
    prologue: list = field(default_factory=list)
    pass_at: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    external: bool = False
    ext_init: dict = field(default_factory=dict)
    access: dict = field(default_factory=dict)
    kept: set | None = None

    @property
    def lanes(self) -> int:
        return lanes(self.cfg)

    def layer_pcs(self, image: int = 0) -> dict[str, list[int]]:
        """Layer name -> pcs of its instructions (loads, syncs and compute) for ``image``."""
        out: dict[str, list[int]] = {}
        for info in self.instrs:
            if info.layer is not None and info.image == image:
                out.setdefault(info.layer, []).append(info.pc)
        return out

    # -- activation memory images ------------------------------------------------------------------------
    def pack_tensor(self, place: TensorPlace, codes: np.ndarray) -> dict[int, int]:
        """Activation words ``{address: word}`` holding ``codes`` (the IR's per-sample shape) at ``place``."""
        c, h, w = place.phys
        x = np.asarray(codes).reshape(c, h, w).astype(np.int64)
        L = self.lanes
        if place.rowpack:  # (1, H, W) -> H words of W lanes
            x = np.concatenate([x[0], np.zeros((h, L - w), dtype=np.int64)], axis=1)
        else:
            pad = place.cw * L - c
            x = np.concatenate([x, np.zeros((pad, h, w), dtype=np.int64)]) if pad else x
            x = x.transpose(1, 2, 0).reshape(h * w * place.cw, L)
        return {place.base + i: int(word) for i, word in enumerate(pack_lanes_array(x))}

    def unpack_tensor(self, place: TensorPlace, words) -> np.ndarray:
        """Codes of the tensor at ``place`` from activation memory contents (a sequence indexed by address,
        or a mapping), in the IR's per-sample shape and dtype."""
        c, h, w = place.phys
        L = self.lanes
        raw = [int(words[place.base + i]) for i in range(place.words)]
        lanes_ = unpack_lanes_array(raw, L, signed=place.dtype == "int8").reshape(len(raw), L)
        if place.rowpack:
            x = lanes_[:, :w].reshape(1, h, w)
        else:
            x = lanes_.reshape(h, w, place.cw * L)[:, :, :c].transpose(2, 0, 1)
        return x.reshape(place.shape).astype(place.dtype)

    def input_words(self, inputs: dict[str, np.ndarray]) -> dict[int, int]:
        """Activation words for a batch of graph inputs ``{name: (N, *shape)}``, ``N <= batch``.

        Raises
        ------
        CompileError
            Unknown input, wrong shape or dtype range, or more images than the program holds.
        """
        from .tiling import CompileError
        words: dict[int, int] = {}
        for t in self.graph.inputs:
            if t.name not in inputs:
                raise CompileError(f"input {t.name!r} missing: given {sorted(inputs)}")
            x = np.asarray(inputs[t.name])
            if x.ndim != len(t.shape) + 1 or tuple(x.shape[1:]) != tuple(t.shape):
                raise CompileError(f"input {t.name!r} has shape {x.shape}: expected (N, {', '.join(map(str, t.shape))})"
                                   f" with N <= {self.batch}")
            if x.shape[0] > self.batch:
                raise CompileError(f"input {t.name!r}: {x.shape[0]} images, the program holds at most {self.batch}")
            if x.size and (x.min() < t.qmin or x.max() > t.qmax):
                raise CompileError(f"input {t.name!r}: codes in [{x.min()}, {x.max()}], allowed {t.dtype} "
                                   f"[{t.qmin}, {t.qmax}]")
            for i in range(x.shape[0]):
                words.update(self.pack_tensor(self.tensors[(i, t.name)], x[i]))
        return words

    def read_tensors(self, words, n_images: int | None = None, names=None) -> dict[str, np.ndarray]:
        """Every tensor that is still in memory after a run (or ``names``) of the first ``n_images`` images,
        stacked ``(N, *shape)``: all of them unless the activation memory was allocated by liveness (then
        :attr:`kept`)."""
        n_images = self.batch if n_images is None else n_images
        names = names or [t for t in self.graph.tensors if self.kept is None or t in self.kept]
        return {name: np.stack([self.unpack_tensor(self.tensors[(i, name)], words) for i in range(n_images)])
                for name in names}

    def describe(self, pc: int) -> str:
        return str(self.instrs[pc]) if 0 <= pc < len(self.instrs) else f"pc {pc}: outside the program"
