"""External-memory mode: graph tensors (and weights that do not fit the weight memory) live in the external
memory; the activation memory stages row bands of them, moved by ``DMA`` and overlapped with compute.

When a graph's tensors do not fit the activation memory (every tensor of every image kept, so that the host can
check them all), :func:`~cimforge.compiler.compile.compile_graph` places them in the external memory instead
(``memory="auto"``, or forced with ``memory="external"``), row-contiguous in the layout they would have on chip
(pixel by pixel, row-major; docs/fabric.md section 2), so that a band of rows is one contiguous run of
external words and one ``DMA`` row. Each layer then runs as *units*, one per band of output rows
(:class:`Unit`): a band is the layer on a sub-image (the input rows the band's windows read, with their halo;
the top padding only on the first band; the output rows of the band), small enough that two consecutive units
fit the activation memory at once. The schedule per unit (docs/memory.md section 8):

* wait (``DSYNC``) for the unit's input band, which was queued before the previous unit's compute when its rows
  were already stored and the staging memory had room (double buffering), else load it now and wait;
* queue the previous unit's output band to the external memory (it runs beside this unit's compute);
* queue the next unit's input band (prefetch) when it does not need this unit's output;
* the layer's compute instructions on the staged band (``MAC`` passes with their weight loads, ``POOL``,
  ``EW``); the output band stays on chip until the next unit queues its store.

The DMA engine runs its commands in order, so a band loaded after another band's store reads what the store
wrote; on chip, a staging region is reused only after the compute that reads it has retired (inputs) or after
a ``DSYNC`` that follows its store (outputs). Weights that do not fit the weight memory live in the external
memory too and come in through two halves of the weight memory, page images of one pass contiguous
(:class:`WeightStream`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..gen.isa import LAYER_COMPUTE, Opcode, lanes
from ..golden.ir import AvgPool, Conv2d, Dense, GlobalAvgPool, Layer, MaxPool, Reshape, Resize

#: Layers whose channel words are independent of each other (a window per channel): a unit may hold a few of
#: every pixel's words (a channel tile) when not even one row band of all of them fits.
CHANNEL_TILED = (MaxPool, AvgPool, GlobalAvgPool)
from .program import MacPass, TensorPlace
from .state import Band, CompileState, Step, emit_instr
from .tiling import CompileError, beyond_range, layer_label

__all__ = ["MEMORY_MODES", "ProgramTooLong", "allocate_by_liveness", "restreams_per_band", "Unit", "Staging", "WeightStream", "input_rows", "layer_bands", "order_bands",
           "assign_band_pages", "emit_external", "stage_weights", "weight_words", "sync_stalls", "check_hazards",
           "DMA_MAX_LEN"]

#: Where graph tensors live: ``auto`` (on chip when every tensor of every image fits the activation memory and
#: the weights fit the weight memory, else external), ``onchip``, ``liveness`` (on chip, a tensor's words reused
#: after its last reader: :func:`allocate_by_liveness`), ``external``.
MEMORY_MODES = ("auto", "onchip", "liveness", "external")

class ProgramTooLong(CompileError):
    """The program does not fit ``controller.program_depth`` (external mode retries with fewer bands)."""


#: Instructions whose engine reads and writes the activation memory.
_COMPUTE = LAYER_COMPUTE

#: Words one ``DMA`` row moves at most (its ``len`` field).
DMA_MAX_LEN = (1 << 16) - 1


def weight_words(state: CompileState) -> int:
    """Weight-memory words of every page image of the graph (what :func:`tile_and_place_weights` writes)."""
    from .planning import layer_geometries
    from .tiling import k_tiles
    from .planning import n_tiles
    cfg, total = state.cfg, 0
    for layer in state.graph.weighted_layers:
        geos = layer_geometries(layer, cfg, rowpack=layer.input.name in state.rowpacked,
                                source_shape=state.layouts.phys[layer.input.name])
        for g, _, _ in geos:
            total += sum(t.elems for t in k_tiles(g, cfg)) * n_tiles(g, cfg)
    return total


def allocate_by_liveness(state: CompileState) -> int:
    """Re-place the on-chip tensors (``state.prog.tensors``, laid out one after another by ``place_tensors``)
    so that a tensor's words are reused once its last reader has run: first fit in production order, each
    tensor (all images of it back to back, aliases sharing their owner's words) live from its producing layer
    to its last reader (graph outputs to the end). The program's steps run layer by layer, so a layer's output
    never overlaps its inputs. Sets ``Program.kept`` (the tensors no later tensor overwrites) and returns the
    words used."""
    graph, prog, lay, batch = state.graph, state.prog, state.layouts, state.batch
    owner = lay.owner
    n = len(graph.layers)
    born = {t.name: -1 for t in graph.inputs}
    last: dict[str, int] = {}
    for i, layer in enumerate(graph.layers):
        born.setdefault(owner[layer.output.name], i)
        for t in layer.inputs:
            last[owner[t.name]] = i
    for name in graph.outputs:
        last[owner[name]] = n
    words = {name: prog.tensors[(0, name)].words * batch for name in born}
    live: list[tuple[int, int, str]] = []  # (base, words, owner)
    base_of, overwritten = {}, set()
    for name in sorted(born, key=lambda t: born[t]):
        now = born[name]
        live = [r for r in live if last.get(r[2], born[r[2]]) >= now]  # readers still to come (or now)
        at = 0
        for b, w, _ in sorted(live):
            if b - at >= words[name]:
                break
            at = max(at, b + w)
        base_of[name] = at
        for other in _overlapping(base_of, words, name):
            overwritten.add(other)
        live.append((at, words[name], name))
    for (i, name), place in list(prog.tensors.items()):
        prog.tensors[(i, name)] = replace(place, base=base_of[owner[name]] + i * place.words)
    prog.kept = {t for t in graph.tensors if owner[t] not in overwritten}
    top = max(base_of, key=lambda t: base_of[t] + words[t], default=None)
    # the layer whose output reaches the highest word: where a too small memory overflows (error messages)
    state.peak_layer = next((layer.name for layer in graph.layers if owner[layer.output.name] == top), None)
    return max((base_of[t] + words[t] for t in base_of), default=0)


def _overlapping(base_of: dict, words: dict, name: str) -> list[str]:
    """The tensors placed before ``name`` whose words ``name``'s overlap."""
    b0, w0 = base_of[name], words[name]
    return [o for o, b in base_of.items() if o != name and b < b0 + w0 and b0 < b + words[o]]


# -- bands ------------------------------------------------------------------------------------------------------


#: The window of a layer whose output rows read the input rows a table names, not a window: a nearest
#: :class:`Resize`, whose output row ``oy`` copies input row ``layer.rows[oy]`` (:func:`input_rows`).
ROW_MAP = (0, 0, 0, 0)


def _window(layer: Layer) -> tuple[int, int, int, int] | None:
    """``(kh, sh, dh, pt)`` of the rows a layer's output row reads, None when every output reads the whole
    input (a dense layer, a global pool), :data:`ROW_MAP` for a resize."""
    if isinstance(layer, (Conv2d, MaxPool, AvgPool)):
        return layer.kernel[0], layer.stride[0], layer.dilation[0], layer.padding[0]
    if isinstance(layer, (Dense, GlobalAvgPool)):
        return None
    if isinstance(layer, Resize):
        return ROW_MAP
    return 1, 1, 1, 0  # element-wise layers and concatenations: row for row


def input_rows(layer: Layer, h: int, o0: int, o1: int) -> tuple[int, int, int]:
    """``(r0, r1, pt)``: the rows ``r0 .. r1 - 1`` of an ``h``-row input that output rows ``o0 .. o1 - 1`` read
    (the halo included), and the padding above row ``r0`` the band's first window sees."""
    win = _window(layer)
    if win is None or (h == 1 and getattr(layer, "broadcast", False)):  # a per-channel operand: read whole
        return 0, h, 0
    if win == ROW_MAP:  # a band of a resize reads the rows from the first to the last its output rows copy
        src = layer.rows[o0:o1]
        return (min(src), max(src) + 1, 0) if src else (0, 0, 0)
    kh, sh, dh, pt = win
    top = o0 * sh - pt
    r0 = min(h, max(0, top))
    r1 = max(r0, min(h, (o1 - 1) * sh - pt + (kh - 1) * dh + 1))
    return r0, r1, max(0, r0 - top)  # a band whose windows all lie in the bottom padding reads no row


def _row_words(place: TensorPlace) -> int:
    """Words of one stored row of a tensor."""
    return 1 if place.rowpack else place.phys[2] * place.cw


def _tile_row_words(place: TensorPlace, ctile: tuple[int, int] | None) -> int:
    """Words of one stored row of a tensor, of the channel words ``ctile`` only when given."""
    return _row_words(place) if ctile is None else place.phys[2] * (ctile[1] - ctile[0])


def _unit_words(state: CompileState, layer: Layer, image: int, o0: int, o1: int,
                ctile: tuple[int, int] | None = None) -> tuple[int, int]:
    """(input words, output words) of the band of output rows ``o0 .. o1 - 1`` (of channel words ``ctile``)."""
    T = state.prog.tensors
    words_in = 0
    for t in layer.inputs:
        p = T[(image, t.name)]
        r0, r1, _ = input_rows(layer, p.phys[1], o0, o1)
        words_in += (r1 - r0) * _tile_row_words(p, ctile)
    return words_in, (o1 - o0) * _tile_row_words(T[(image, layer.output.name)], ctile)


def channel_tiles(state: CompileState, layer: Layer, image: int) -> list[tuple[int, int]] | None:
    """The fewest equal tiles of channel words of a pool (:data:`CHANNEL_TILED`) over all its rows whose input
    and output fit half the activation memory, else the whole of it; None when the layer's channels cannot be
    tiled or not even one word of every pixel fits. A global average pool of a 48 x 48 x 16 tensor (4608
    words) on the default preset's 4096: two tiles of one word per pixel, each loaded and stored as a 2-D
    ``DMA`` (one row per pixel)."""
    T = state.prog.tensors
    p, q = T[(image, layer.input.name)], T[(image, layer.output.name)]
    if not isinstance(layer, CHANNEL_TILED) or p.rowpack or q.rowpack or p.cw < 2 or p.cw != q.cw:
        return None
    D, oh = state.cfg.fabric.act_depth, q.phys[1]
    for budget in (D // 2, D):
        for n in range(2, p.cw + 1):
            g = -(-p.cw // n)
            tiles = [(w, min(p.cw, w + g)) for w in range(0, p.cw, g)]
            if sum(_unit_words(state, layer, image, 0, oh, tiles[0])) <= budget:
                return tiles
    return None


def layer_bands(state: CompileState, layer: Layer, image: int) -> list[tuple[int, int]]:
    """The output row bands of ``layer``: the fewest equal bands whose input (with halo) and output fit half the
    activation memory (two units at once: double buffering), else the whole of it.

    Raises
    ------
    CompileError
        Not even a band of one output row fits ``fabric.act_depth``; the message names the layer of the model
        that needs the most, the buffer and the smallest depth that fits every layer (:func:`raise_act_depth`).
    """
    D = state.cfg.fabric.act_depth
    oh = state.prog.tensors[(image, layer.output.name)].phys[1]
    candidates = [1] if _window(layer) is None else range(1, oh + 1)
    if state.pipelined_bands and len(candidates) > 2 and sum(_unit_words(state, layer, image, 0, oh)) > D // 4 \
            and not restreams_per_band(state, layer):
        # a layer too big to stay on chip for the next one: three bands at least, so that the next layer's
        # first band (which reads a little past this layer's first band) can be loaded while the last one runs
        candidates = range(3, oh + 1)
    for budget in (D // 2, D):
        for nb in candidates:
            rows = -(-oh // nb)
            bands = [(o, min(oh, o + rows)) for o in range(0, oh, rows)]
            if max(sum(_unit_words(state, layer, image, o0, o1)) for o0, o1 in bands) <= budget:
                return bands
    raise_act_depth(state, image)  # the model does not fit: name the layer that needs the most
    # else only this pool's row bands do not fit, its channel tiles do (_chains runs it in those)
    _act_depth_error(layer, *band_need(state, layer, image), D)


def band_need(state: CompileState, layer: Layer, image: int) -> tuple[int, str]:
    """The fewest activation words ``layer`` can run in (one output row band, or the whole input and output of
    a layer whose outputs read the whole input; one channel word of every pixel for a pool that tiles), and
    what that is, in words for an error message."""
    oh = state.prog.tensors[(image, layer.output.name)].phys[1]
    one = 0 if _window(layer) is None else 1
    need = max(sum(_unit_words(state, layer, image, o, o + 1 if one else oh)) for o in range(0, oh if one else 1))
    what = "one output row band (its input rows with the halo and the output row)" if one else \
        "the whole input and output (every output reads the whole input)"
    if isinstance(layer, CHANNEL_TILED) and not state.prog.tensors[(image, layer.input.name)].rowpack:
        need = min(need, sum(_unit_words(state, layer, image, 0, oh, (0, 1))))
        what = f"{what[:-1]}, or one channel word of every pixel)" if what.endswith(")") else what
    return need, what


def raise_act_depth(state: CompileState, image: int) -> None:
    """Raise the error of a model that does not fit the activation memory even in row bands: it names the
    layer that needs the most, so that the size it allows fits every layer.

    Raises
    ------
    CompileError
        Always, when some layer's :func:`band_need` exceeds ``fabric.act_depth``.
    """
    D = state.cfg.fabric.act_depth
    needs = [(*band_need(state, layer, image), layer) for layer in state.graph.layers
             if not isinstance(layer, Reshape)]  # a reshape is a view of its input: it runs nothing
    need, what, layer = max(needs, key=lambda t: t[0])
    if need > D:
        _act_depth_error(layer, what, need, D)


def _act_depth_error(layer: Layer, what: str, need: int, depth: int) -> None:
    raise CompileError(f"layer {layer_label(layer.name)}: {what} needs {need} activation words, "
                       f"fabric.act_depth = {depth}: allowed fabric.act_depth >= {need}")


def restreams_per_band(state: CompileState, layer: Layer) -> bool:
    """Streamed weights whose passes do not all fit the pages at once: every band of ``layer`` loads them again
    (:func:`assign_band_pages`), so each band more costs a whole weight transfer; such a layer takes the fewest
    bands that fit (ResNet-8's conv7 on the default preset: 3 bands were 3 transfers of 2304 weight words)."""
    if state.resident:
        return False
    plans = [gp.plan for key, gp in state.plans.items() if key[0] == layer.name and gp.plan is not None]
    return sum(p.total_pages for p in plans) > state.cfg.macro.pages


@dataclass
class Unit:
    """One band of one layer of one image: what the schedule stages and computes together.

    Attributes
    ----------
    layer : Layer
    image : int
    band : Band
    ins : list of (str, int, int)
        ``(tensor name as the layer reads it, r0, r1)``: the input rows staged, in the order of
        ``layer.inputs``.
    steps : list of Step
        The band's compute (one per ``MAC`` pass, or the layer's vector instructions).
    in_words, out_words : int
    index : int
        Position in the program order.
    """

    layer: Layer
    image: int
    band: Band
    ins: list
    steps: list
    in_words: int
    out_words: int
    index: int = 0


def _band_pass(mp: MacPass, layer: Layer, r0: int, r1: int, band: Band) -> MacPass:
    """``mp`` restricted to a band: the geometry of the sub-image (input rows ``r0 .. r1 - 1``, the band's top
    padding, the band's output rows)."""
    g = mp.geom
    if not isinstance(layer, Conv2d) or (r1 - r0, band.pt, band.o1 - band.o0) == (g.h, g.pt, g.oh):
        return mp
    sub = replace(g, h=r1 - r0, pt=band.pt, oh=band.o1 - band.o0)
    return replace(mp, geom=sub, full_geom=g, row0=band.o0, loads=[])


def order_bands(state: CompileState) -> None:
    """Program order in external mode: image by image, layer by layer, band by band (``state.units``), and the
    ``MAC`` passes in that order (``state.order``)."""
    units = []
    for image in range(state.batch):
        for chain, bands, ctiles in _chains(state, image):
            for o0, o1 in bands:
                for ctile in ctiles:
                    for layer in chain:
                        units.append(_unit(state, layer, image, o0, o1, len(units), ctile))
    state.units = units
    state.steps = [st for u in units for st in u.steps]
    state.set_order([st.mac for st in state.steps if st.mac is not None])


def _unit(state: CompileState, layer: Layer, image: int, o0: int, o1: int, index: int,
          ctile: tuple[int, int] | None = None) -> Unit:
    """The unit of ``layer``'s output rows ``o0 .. o1 - 1`` of ``image`` (its channel words ``ctile``)."""
    from .lowering import lowering_for
    rows = [(t.name, *input_rows(layer, state.prog.tensors[(image, t.name)].phys[1], o0, o1)) for t in layer.inputs]
    band = Band(o0, o1, rows[0][3], ctile)
    ins = [(n, r0, r1) for n, r0, r1, _ in rows]
    base = lowering_for(layer).steps(state, layer, image, 1)
    if base[0].mac is not None:
        steps = [Step(layer, image, _band_pass(st.mac, layer, rows[0][1], rows[0][2], band), band) for st in base]
    else:
        steps = [Step(layer, image, band=band)]
    w_in, w_out = _unit_words(state, layer, image, o0, o1, ctile)
    return Unit(layer, image, band, ins, steps, w_in, w_out, index)


def _layer_pages(state: CompileState, layer: Layer) -> int:
    return sum(gp.plan.total_pages for key, gp in state.plans.items() if key[0] == layer.name and gp.plan)


def _chains(state: CompileState, image: int) -> list[tuple[list[Layer], list[tuple[int, int]], list]]:
    """The layers of one image in runs that go band by band together, with the run's bands: a row-for-row layer
    (element-wise, or a 1x1 convolution of stride 1 without padding, e.g. a BatchNormalization that could not be
    folded) that reads the output of the layer before it joins that layer's run, so that each of its bands reads
    the band just computed on chip (forwarded, :func:`_forwarded`) instead of storing it and loading it back
    (ResNet-8 on the default preset: every BatchNormalization and residual add waited for its first band).
    It joins only when its bands of the run's rows fit with that band, and streamed weights of the whole run
    fit the pages (else every band would reload them). A pool of which not even one row band fits runs alone,
    channel tile by channel tile (:func:`channel_tiles`); the third entry lists the run's tiles (``[None]``: every
    channel word at once)."""
    from .lowering import lowering_for
    out: list[tuple[list[Layer], list[tuple[int, int]], list]] = []
    for layer in state.graph.layers:
        if not lowering_for(layer).steps(state, layer, image, 1):  # a view of another tensor: nothing to run
            continue
        if out and out[-1][2] == [None] and _joins(state, layer, out[-1][0], out[-1][1], image):
            out[-1][0].append(layer)
            continue
        try:
            out.append(([layer], layer_bands(state, layer, image), [None]))
        except CompileError:
            tiles = channel_tiles(state, layer, image)
            if tiles is None:
                raise
            out.append(([layer], [(0, state.prog.tensors[(image, layer.output.name)].phys[1])], tiles))
    return out


def _joins(state: CompileState, layer: Layer, chain: list[Layer], bands: list[tuple[int, int]], image: int) -> bool:
    """``layer`` may run band by band with ``chain`` (see :func:`_chains`)."""
    T, D = state.prog.tensors, state.cfg.fabric.act_depth
    last = chain[-1]
    if _window(layer) != (1, 1, 1, 0) or _window(last) is None or len(bands) < 2:
        return False
    fwd = next((t for t in layer.inputs if state.layouts.owner[t.name] == last.output.name), None)
    if fwd is None:
        return False
    oh = T[(image, layer.output.name)].phys[1]
    if oh != T[(image, last.output.name)].phys[1] or any(T[(image, t.name)].phys[1] != oh for t in layer.inputs):
        return False
    if not state.resident and sum(_layer_pages(state, x) for x in chain + [layer]) > state.cfg.macro.pages:
        return False
    rw = _row_words(T[(image, fwd.name)])
    for o0, o1 in bands:
        w_in, w_out = _unit_words(state, layer, image, o0, o1)
        if _unit_words(state, last, image, o0, o1)[1] + w_in - (o1 - o0) * rw + w_out > D // 2:
            return False
    return True


def assign_band_pages(state: CompileState) -> None:
    """Pages of each band's passes: resident weights once per pass of the layer (every band reuses them);
    streamed weights in a ring, a band's pass reusing its pages when the pass before it left them intact (the
    next band of a layer whose passes all fit the pages), else loading them."""
    from .lowering.mac import weight_loads
    if state.resident:
        assign_resident_pages(state)
        return
    P = state.cfg.macro.pages
    owner: list = [None] * P  # pass key whose weights each page holds
    where: dict = {}
    ptr = 0
    for mp in state.order:
        key = (mp.layer, mp.group, mp.n_base)
        b = where.get(key)
        if b is not None and all(owner[p] == key for p in range(b, b + mp.pages)):
            mp.page_base, mp.loads = b, []
            continue
        if ptr + mp.pages > P:
            ptr = 0
        mp.page_base = ptr
        for p in range(ptr, ptr + mp.pages):
            owner[p] = key
        where[key] = ptr
        ptr += mp.pages
        mp.loads = weight_loads(mp, state)


def assign_resident_pages(state: CompileState) -> None:
    """Resident weights in external mode: each distinct pass one after another, loaded once by the prologue."""
    from .lowering.mac import weight_loads
    where: dict = {}
    ptr = 0
    for mp in state.order:
        key = (mp.layer, mp.group, mp.n_base)
        if key in where:
            mp.page_base, mp.loads = where[key], []
            continue
        mp.page_base = where[key] = ptr
        ptr += mp.pages
        mp.loads = weight_loads(mp, state)


# -- weights from the external memory ---------------------------------------------------------------------------


def stage_weights(state: CompileState) -> None:
    """Weights beyond ``fabric.weight_depth`` (external mode): the weight-memory image moves to the external
    memory after the tensors, and ``LOAD``s get their page images through :class:`WeightStream`."""
    prog, cfg = state.prog, state.cfg
    if len(prog.wmem) <= cfg.fabric.weight_depth:
        return
    base = -(-state.ext_used // 512) * 512  # a 4 KB boundary (512 words of 64 bits): whole bursts
    end = base + len(prog.wmem)
    if end > cfg.fabric.ext_depth:
        past = min(((off, key[0]) for key, (off, n) in state.wblocks.items() if base + off + n > cfg.fabric.ext_depth),
                   default=(0, None))[1]  # weights are placed in layer order: the first block past the end
        at = f" (layer {past!r}'s weights are the first past it)" if past else ""
        raise CompileError(f"external memory too small for graph {state.graph.name!r}: tensors and weights need "
                           f"{end} words{at}, fabric.ext_depth = {cfg.fabric.ext_depth}: allowed fabric.ext_depth >= "
                           f"{end}" + beyond_range(cfg, "fabric", "ext_depth", end))
    (layer, *_), (_, rows) = max(state.wblocks.items(), key=lambda kv: kv[1][1])
    if rows > cfg.fabric.weight_depth // 2:  # each page image comes in through one half of the weight memory
        raise CompileError(f"layer {layer!r}: a page image of {rows} words does not fit half of the weight memory "
                           f"(fabric.weight_depth = {cfg.fabric.weight_depth}): allowed fabric.weight_depth >= "
                           f"{2 * rows}")
    prog.ext_init = {base + i: w for i, w in enumerate(prog.wmem)}
    spans: dict[str, tuple[int, int]] = {}
    for (layer, *_), (src, rows) in state.wblocks.items():
        lo, hi = spans.get(layer, (src, src + rows))
        spans[layer] = (min(lo, src), max(hi, src + rows))
    state.wstream = WeightStream(base, cfg.fabric.weight_depth // 2, spans)
    prog.wmem = []


@dataclass
class WeightStream:
    """Page images from the external memory into the weight memory, then into the pages.

    The weight memory is two halves. A layer whose page images fit one half is *cached*: one ``DMA``
    (``wmem = 1``) brings them all into a half, queued at the start of the unit before the layer's first band
    (:meth:`prefetch`, so that it runs beside that unit's compute and the unit-start ``DSYNC`` covers it), and
    every band's ``LOAD``s read them there. A larger layer comes in chunks of at most a half: each chunk's
    ``DMA``, a ``DSYNC``, its ``LOAD``s. A half is refilled only after a ``SYNC`` has seen the loads that read it
    finish.

    Attributes
    ----------
    ext_base : int
        External word of weight-memory word 0 of the page images.
    half : int
        Words of one half of the weight memory.
    spans : dict
        Layer -> ``(first, end)`` page-image words of its weights (contiguous: :func:`tile_and_place_weights`).
    """

    ext_base: int
    half: int
    spans: dict = field(default_factory=dict)
    next: int = 0
    pending: list = field(default_factory=lambda: [False, False])
    cached: dict = field(default_factory=dict)  # layer -> (half, pc of its DMA)
    staged: dict = field(default_factory=dict)  # id(MacPass) -> halves of its chunks queued ahead (one)

    def _take(self, state: CompileState, h: int, layer: str, image) -> None:
        """Half ``h`` for new contents: wait for the loads that read it, forget what it held."""
        if self.pending[h]:
            emit_instr(state, Opcode.SYNC, layer, image, f"weight memory half {h} read")
            self.pending = [False, False]
        self.cached = {k: v for k, v in self.cached.items() if v[0] != h}

    def cacheable(self, layer: str) -> bool:
        lo, hi = self.spans.get(layer, (0, 0))
        return 0 < hi - lo <= self.half

    def prefetch(self, state: CompileState, layer: str, image, keep: str | None = None) -> None:
        """Queue the ``DMA`` of cacheable ``layer``'s page images into a half that ``keep``'s are not in."""
        if layer in self.cached or not self.cacheable(layer):
            return
        h = self.next
        if keep in self.cached and self.cached[keep][0] == h:
            h ^= 1
        self.next = h ^ 1
        self._take(state, h, layer, image)
        lo, hi = self.spans[layer]
        pc = emit_instr(state, Opcode.DMA, layer, image, f"weights {hi - lo} words -> half {h}", store=0, wmem=1,
                        ext=self.ext_base + lo, addr=h * self.half, rows=1, len=hi - lo, ext_stride=0, stride=0)
        self.cached[layer] = (h, pc)

    def ready(self, state: CompileState, mp: MacPass) -> bool:
        """``mp``'s loads may be queued before the compute that precedes ``mp`` (so that they run beside it)
        unless the ``DSYNC`` they need first would wait there for more activation words, queued since the last
        ``DSYNC``, than the loads move (ResNet-8's BatchNormalizations, 8 rows of weights, waited for the next
        convolution band's 768 input words): then they come after that compute. Cached page images whose
        ``DMA`` a ``DSYNC`` already followed need none."""
        from ..gen.isa import decode_op
        if not mp.loads:
            return True
        if not self.cacheable(mp.layer):
            return False
        prog = state.prog
        if mp.layer in self.cached:
            return any(i.op == "DSYNC" for i in prog.instrs[self.cached[mp.layer][1] + 1:])
        queued = 0
        for pc in range(len(prog.instrs) - 1, -1, -1):
            if prog.instrs[pc].op == "DSYNC":
                break
            if prog.instrs[pc].op == "DMA":
                _, a = decode_op(state.cfg, prog.code[pc])
                queued += 0 if a["wmem"] else a["rows"] * a["len"]
        return queued <= sum(ld["count"] for ld in mp.loads)

    def emit_loads(self, state: CompileState, mp: MacPass) -> None:
        if not mp.loads:
            return
        if self.cacheable(mp.layer):
            self.prefetch(state, mp.layer, mp.image_label)
            h, pc = self.cached[mp.layer]
            if not any(i.op == "DSYNC" for i in state.prog.instrs[pc + 1:]):
                emit_instr(state, Opcode.DSYNC, mp.layer, mp.image_label, "weights in")
            lo = self.spans[mp.layer][0]
            for ld in mp.loads:
                self._load(state, mp, dict(ld, src=h * self.half + ld["src"] - lo))
            self.pending[h] = True
            return
        ahead = self.staged.pop(id(mp), [])
        if ahead:  # queued before the compute that preceded this pass (stage_ahead)
            emit_instr(state, Opcode.DSYNC, mp.layer, mp.image_label, "weights in")
        for i, chunk in enumerate(self._chunks(mp)):
            if i < len(ahead):
                h = ahead[i]
            else:
                h = self._chunk_dma(state, mp, chunk)
                emit_instr(state, Opcode.DSYNC, mp.layer, mp.image_label, "weights in")
            src0 = chunk[0]["src"]
            for ld in chunk:
                self._load(state, mp, dict(ld, src=h * self.half + ld["src"] - src0))
            self.pending[h] = True

    def stage_ahead(self, state: CompileState, mp: MacPass) -> None:
        """Queue the ``DMA`` of ``mp``'s first chunk now, so that it runs beside the compute instruction that comes
        next; called right after a ``SYNC`` that saw every load finish, so both halves are free. One chunk only:
        a ``DSYNC`` waits for every queued transfer, so the second chunk's transfer is better queued after the
        first one's wait, beside its loads. Cached layers come by :meth:`prefetch` instead. ResNet-8's conv7
        and conv8 on the default preset: every chunk of a pass came in after the pass before."""
        if not mp.loads or self.cacheable(mp.layer) or id(mp) in self.staged:
            return
        self.pending = [False, False]  # the SYNC before has seen every load that read a half
        self.staged[id(mp)] = [self._chunk_dma(state, mp, chunk) for chunk in self._chunks(mp)[:1]]

    def _chunk_dma(self, state: CompileState, mp: MacPass, chunk: list[dict]) -> int:
        """Queue the ``DMA`` of one chunk into the next half (after its loads are seen done); the half."""
        h = self.next
        self.next ^= 1
        self._take(state, h, mp.layer, mp.image_label)
        src0 = chunk[0]["src"]
        words = chunk[-1]["src"] + chunk[-1]["count"] - src0
        emit_instr(state, Opcode.DMA, mp.layer, mp.image_label, f"weights {words} words -> half {h}",
                   store=0, wmem=1, ext=self.ext_base + src0, addr=h * self.half, rows=1, len=words,
                   ext_stride=0, stride=0)
        return h

    def _chunks(self, mp: MacPass) -> list[list[dict]]:
        """``mp``'s loads in chunks of contiguous page images of at most half the weight memory."""
        chunks: list[list[dict]] = []
        for ld in mp.loads:
            if ld["count"] > self.half:
                raise CompileError(f"layer {mp.layer!r}: a page image of {ld['count']} words does not fit half of "
                                   f"the weight memory (fabric.weight_depth = {2 * self.half}): allowed "
                                   f"fabric.weight_depth >= {2 * ld['count']}")
            c = chunks[-1] if chunks else None
            if c and c[-1]["src"] + c[-1]["count"] == ld["src"] and \
                    ld["src"] + ld["count"] - c[0]["src"] <= self.half:
                c.append(ld)
            else:
                chunks.append([ld])
        return chunks

    @staticmethod
    def _load(state: CompileState, mp: MacPass, args: dict) -> None:
        emit_instr(state, Opcode.LOAD, mp.layer, mp.image_label, f"page {args['page']} rows {args['row0']}+"
                   f"{args['count']} macros {args['mask']:#x}", **args)


# -- staging and the schedule ----------------------------------------------------------------------------------


class Staging:
    """First-fit allocation of staging regions in the activation memory. A region is held while an engine or a
    queued load uses it (*pinned*) or while a queued store reads it (*storing*, until the next ``DSYNC``); it is
    free when neither holds."""

    def __init__(self, depth: int):
        self.depth = depth
        self.regions: dict[int, list] = {}  # base -> [words, pinned, storing]

    def alloc(self, words: int, top: bool = False) -> int | None:
        """The lowest (``top``: the highest) base of ``words`` free words, pinned; None if there is none. Inputs
        come from the bottom, outputs from the top, which keeps the free words in one run."""
        words = max(1, words)  # every region its own base
        gaps, at = [], 0
        for base in sorted(self.regions):
            gaps.append((at, base))
            at = max(at, base + self.regions[base][0])
        gaps.append((at, self.depth))
        fits = [(a, b) for a, b in gaps if b - a >= words]
        if not fits:
            return None
        base = fits[-1][1] - words if top else fits[0][0]
        self.regions[base] = [words, True, False]
        return base

    def unpin(self, base: int) -> None:
        """The engines are done with the region."""
        r = self.regions[base]
        r[1] = False
        if not r[2]:
            del self.regions[base]

    def storing(self, base: int) -> None:
        self.regions[base][2] = True

    def synced(self) -> None:
        """A ``DSYNC`` retired: every queued store is done."""
        for base in list(self.regions):
            r = self.regions[base]
            r[2] = False
            if not r[1]:
                del self.regions[base]

    def alloc_or_sync(self, words: int, top: bool = False) -> tuple[int | None, bool]:
        """:meth:`alloc`, after a ``DSYNC`` when there is no room before one: (base, whether it synced)."""
        base = self.alloc(words, top)
        if base is not None:
            return base, False
        self.synced()
        return self.alloc(words, top), True

    def copy(self) -> "Staging":
        c = Staging(self.depth)
        c.regions = {b: list(r) for b, r in self.regions.items()}
        return c


def _dma(state: CompileState, store: int, ext: int, addr: int, words: int, layer: str, image: int,
         text: str) -> None:
    for off in range(0, words, DMA_MAX_LEN):
        n = min(DMA_MAX_LEN, words - off)
        emit_instr(state, Opcode.DMA, layer, image, text, store=store, wmem=0, ext=ext + off, addr=addr + off,
                   rows=1, len=n, ext_stride=0, stride=0)


def _forwarded(state: CompileState, u: Unit, prev: Unit | None, name: str, r0: int, r1: int) -> bool:
    """Input rows ``r0 .. r1 - 1`` of ``name`` are all in the previous unit's output band, still on chip, and
    the regions the unit then holds (that band, the unit's other inputs and its output) fit half the activation
    memory (so that keeping the band never leaves the unit's output without room)."""
    if u.band.ctile is not None or (prev is not None and prev.band.ctile is not None):
        return False  # a channel tile holds some words of every pixel, not the rows another unit reads
    if not (prev is not None and prev.image == u.image and r0 < r1
            and state.layouts.owner[name] == prev.layer.output.name and prev.band.o0 <= r0 and r1 <= prev.band.o1):
        return False
    rest = u.in_words - (r1 - r0) * _row_words(state.prog.tensors[(u.image, name)])
    return prev.out_words + rest + u.out_words <= state.cfg.fabric.act_depth // 2


def _load_words(state: CompileState, u: Unit, prev: Unit | None) -> int:
    """Words of the unit's input bands that come by DMA (the others are forwarded from ``prev``)."""
    T = state.prog.tensors
    return sum((r1 - r0) * _tile_row_words(T[(u.image, n)], u.band.ctile) for n, r0, r1 in u.ins
               if not _forwarded(state, u, prev, n, r0, r1))


def _load_unit(state: CompileState, u: Unit, base: int | None, prev: Unit | None, prev_base: int | None) -> dict:
    """Queue the unit's input bands that are not on chip into ``base`` on; the staged places
    ``{(image, name): TensorPlace}`` (forwarded bands in ``prev``'s output region at ``prev_base``)."""
    T, ct = state.prog.tensors, u.band.ctile
    staged, at = {}, base
    for name, r0, r1 in u.ins:
        p = T[(u.image, name)]
        rw = _row_words(p)
        if (u.image, name) in staged:
            continue
        if r0 == r1:  # a band whose windows lie in the bottom padding: no row to read, any base
            where = 0
        elif _forwarded(state, u, prev, name, r0, r1):
            where = prev_base + (r0 - prev.band.o0) * rw
        elif ct is not None:
            _dma_tile(state, 0, p, r0, r1, ct, at, u, f"in {name} rows {r0}..{r1 - 1} words {ct[0]}..{ct[1] - 1}")
            where = at
            at += (r1 - r0) * _tile_row_words(p, ct)
        else:
            _dma(state, 0, p.base + r0 * rw, at, (r1 - r0) * rw, u.layer.name, u.image,
                 f"in {name} rows {r0}..{r1 - 1}")
            where = at
            at += (r1 - r0) * rw
        staged[(u.image, name)] = _staged_place(p, where, r0, r1, ct, lanes(state.cfg))
    return staged


def _staged_place(p: TensorPlace, base: int, r0: int, r1: int, ctile, L: int) -> TensorPlace:
    """The on-chip place of rows ``r0 .. r1 - 1`` of ``p`` (of its channel words ``ctile``) at ``base``."""
    if ctile is None:
        return replace(p, base=base, phys=(p.phys[0], r1 - r0, p.phys[2]))
    g = ctile[1] - ctile[0]
    return replace(p, base=base, phys=(g * L, r1 - r0, p.phys[2]), cw=g)


def _dma_tile(state: CompileState, store: int, p: TensorPlace, r0: int, r1: int, ctile, addr: int, u: Unit,
              text: str) -> None:
    """The words ``ctile`` of every pixel of rows ``r0 .. r1 - 1`` of ``p`` to or from ``addr`` on, packed
    (``g`` words per pixel): 2-D ``DMA``s of one row per pixel, ``cw`` words apart in the external memory."""
    g, w = ctile[1] - ctile[0], p.phys[2]
    first, pixels = r0 * w, (r1 - r0) * w
    for off in range(0, pixels, DMA_MAX_LEN):
        n = min(DMA_MAX_LEN, pixels - off)
        emit_instr(state, Opcode.DMA, u.layer.name, u.image, text, store=store, wmem=0,
                   ext=p.base + (first + off) * p.cw + ctile[0], addr=addr + off * g, rows=n, len=g,
                   ext_stride=p.cw, stride=g)


def _next_load(state: CompileState, units: list[Unit], i: int) -> tuple[Unit | None, Unit | None]:
    """The unit whose input bands unit ``i`` may prefetch, and the unit before it: ``i + 1``, or past units that
    load nothing (every input forwarded from the unit before, as a BatchNormalization running band by band
    with its convolution, :func:`_chains`) the next one that loads and forwards nothing, so that its load runs
    beside the compute of both."""
    j = i + 1
    while j < len(units) and units[j - 1].image == units[j].image and not _load_words(state, units[j], units[j - 1]):
        j += 1
    if j >= len(units):
        return None, None
    if j > i + 1 and any(_forwarded(state, units[j], units[j - 1], *x) for x in units[j].ins):
        return None, None  # it would read the band of a unit not emitted yet
    return units[j], units[j - 1]


def _producers(units: list[Unit], state: CompileState) -> dict[int, int]:
    """Unit index -> the highest index of a unit whose output rows it must load (-1: only graph inputs, or all
    forwarded from the unit before it)."""
    owner = state.layouts.owner
    made: dict[tuple[int, str], list[tuple[int, int, int]]] = {}
    out = {}
    for k, u in enumerate(units):
        prev = units[k - 1] if k else None
        hi = -1
        for name, r0, r1 in u.ins:
            if _forwarded(state, u, prev, name, r0, r1):
                continue
            for idx, o0, o1 in made.get((u.image, owner[name]), []):
                if o0 < r1 and r0 < o1:
                    hi = max(hi, idx)
        out[u.index] = hi
        made.setdefault((u.image, u.layer.output.name), []).append((u.index, u.band.o0, u.band.o1))
    return out


def _prefetch_room(state: CompileState, staging: Staging, units: list[Unit], i: int, nxt: Unit, words: int,
                   held: tuple[int | None, int | None, int | None]) -> int | None:
    """A staging region of ``words`` words for the input bands of ``nxt``, loaded beside the compute of unit
    ``i``, taken (pinned) from ``staging``; None to load them later. ``held`` is unit ``i``'s (input, forwarded
    input, output) regions.

    The region stays pinned until ``nxt`` has run, while the units between (which load nothing) and ``nxt``
    itself place their outputs. Enough free words is not enough: the region splits the free space, and the
    input region of unit ``i``, freed after it, can leave a hole too small for the next output (a QOperator
    uint8 ResNet-8 at batch 2 did). So the schedule up to ``nxt``'s output is replayed on a copy of the
    allocator, with the region at the bottom and then at the top of the free space, and the first placement
    under which every output finds room is taken."""
    in_base, prev_base, out_base = held
    for top in (False, True):
        trial = staging.copy()
        b = trial.alloc(words, top)
        if b is None:
            continue
        for base in (in_base, prev_base):  # unit i's inputs are free once it has run
            if base is not None:
                trial.unpin(base)
        prev, prev_out, ok = units[i], out_base, True
        for v in units[i + 1:nxt.index + 1]:  # emit_external's steps for each unit up to its output region
            if v is nxt:
                trial.synced()  # "input band in"
            if prev_out is not None:  # the unit before's store is queued
                trial.storing(prev_out)
                if not any(_forwarded(state, v, prev, *x) for x in v.ins):
                    trial.unpin(prev_out)
                    prev_out = None
            out = trial.alloc_or_sync(v.out_words, True)[0] if v.out_words else None
            if v.out_words and out is None:
                ok = False
                break
            if prev_out is not None:
                trial.unpin(prev_out)
            prev, prev_out = v, out
        if ok:
            return staging.alloc(words, top)
    return None


def emit_external(state: CompileState) -> None:
    """The instructions of an external-mode program (see the module notes), then ``END``."""
    from .lowering import lowering_for
    from .lowering.mac import emit_loads
    prog, cfg = state.prog, state.cfg
    units = state.units
    if state.resident:
        for mp in state.order:
            if mp.loads:
                emit_loads(state, mp)
        emit_instr(state, Opcode.SYNC, None, None, "weights resident")
        prog.prologue = list(range(len(prog.code)))
    elif state.order and state.order[0].loads:
        emit_loads(state, state.order[0])
    producers = _producers(units, state)
    staging = Staging(cfg.fabric.act_depth)
    prefetched: dict[int, tuple[int | None, dict]] = {}
    prev, prev_base = None, None  # the unit before, its output region (its store not queued yet)
    T = prog.tensors

    def store(u: Unit, base: int) -> None:
        place, ct = T[(u.image, u.layer.output.name)], u.band.ctile
        text = f"out {u.layer.output.name} rows {u.band.o0}..{u.band.o1 - 1}"
        if ct is None:
            _dma(state, 1, place.base + u.band.o0 * _row_words(place), base, u.out_words, u.layer.name, u.image,
                 text)
        else:
            _dma_tile(state, 1, place, u.band.o0, u.band.o1, ct, base, u, f"{text} words {ct[0]}..{ct[1] - 1}")
        staging.storing(base)

    def dsync(u: Unit, text: str) -> None:
        emit_instr(state, Opcode.DSYNC, u.layer.name, u.image, text)
        staging.synced()

    def alloc(u: Unit, words: int, top: bool = False) -> int | None:
        if not words:
            return None
        base, synced = staging.alloc_or_sync(words, top)
        if synced:
            emit_instr(state, Opcode.DSYNC, u.layer.name, u.image, "staging memory free")
        if base is None:  # cannot happen while units fit (layer_bands), forwarding keeps to its bound and
            # prefetches leave room (_prefetch_room): a bug, not the user's
            raise RuntimeError(f"layer {u.layer.name!r} image {u.image}: no staging room for {words} words in "
                               f"fabric.act_depth = {cfg.fabric.act_depth}")
        return base

    for i, u in enumerate(units):
        if u.index in prefetched:
            dsync(u, "input band in")
            if prev:
                store(prev, prev_base)
            in_base, staged = prefetched.pop(u.index)
        else:
            if prev:
                store(prev, prev_base)
                if not any(_forwarded(state, u, prev, *x) for x in u.ins):
                    staging.unpin(prev_base)  # not read by this unit: its words are free once the store is done
                    prev_base = None
            words = _load_words(state, u, prev)
            trial = staging.copy()  # the input first fit below regions still storing can leave the output no room
            if words and u.out_words and (trial.alloc(words) is None
                                          or trial.alloc_or_sync(u.out_words, True)[0] is None):
                dsync(u, "staging memory free")
            in_base = alloc(u, words)
            staged = _load_unit(state, u, in_base, prev, prev_base)
            if in_base is not None:
                dsync(u, "input band in")
        if state.wstream is not None:  # the next weighted layer's page images, beside this unit's compute
            later = next((v for v in units[i + 1:] if v.layer is not u.layer and v.steps[0].mac is not None), None)
            if later is not None:
                state.wstream.prefetch(state, later.layer.name, u.image, keep=u.layer.name)
        if prev_base is not None and not any(_forwarded(state, u, prev, *x) for x in u.ins):
            staging.unpin(prev_base)  # not read by this unit: free once its store is done
            prev_base = None
        out_base = alloc(u, u.out_words, top=True)
        nxt, before = _next_load(state, units, i)
        if nxt is not None and nxt.index not in prefetched and producers[nxt.index] < u.index:
            words = _load_words(state, nxt, before)
            b = _prefetch_room(state, staging, units, i, nxt, words, (in_base, prev_base, out_base)) \
                if words else None
            if b is not None:
                prefetched[nxt.index] = (b, _load_unit(state, nxt, b, before, out_base))
        staged[(u.image, u.layer.output.name)] = _staged_place(T[(u.image, u.layer.output.name)], out_base,
                                                               u.band.o0, u.band.o1, u.band.ctile, lanes(cfg))
        prog.tensors = staged
        first = len(prog.code)
        try:
            for st in u.steps:
                lowering_for(st.layer).emit(state, st)
        finally:
            prog.tensors = T
        for pc in range(first, len(prog.code)):  # what the band's compute touches (check_hazards)
            if prog.instrs[pc].op in _COMPUTE:
                prog.access[pc] = ([(p.base, p.words) for k, p in staged.items() if k[1] != u.layer.output.name],
                                   [(out_base, u.out_words)])
        if in_base is not None:
            staging.unpin(in_base)
        if prev_base is not None:
            staging.unpin(prev_base)  # read by this unit's compute (forwarded); its store was queued
        prev, prev_base = u, out_base
    if prev:
        store(prev, prev_base)
        dsync(prev, "outputs stored")
    emit_instr(state, Opcode.END, None, None, "end")
    if len(prog.code) > cfg.controller.program_depth:
        raise ProgramTooLong(f"program of {len(prog.code)} instructions for batch {state.batch}: "
                             f"controller.program_depth = {cfg.controller.program_depth}: allowed "
                             f"controller.program_depth >= {len(prog.code)} (or a smaller batch)")
    prog.options = {"stream": not state.resident, "memory": "external"}


# -- reports ---------------------------------------------------------------------------------------------------


def sync_stalls(program, stamps: list[int]) -> list[tuple[int, int]]:
    """Per instruction ``(exec cycle, cycles waited)`` from retire stamps (predicted or measured): a ``DSYNC``
    waits on the external memory, a ``SYNC`` on the weight loader; other instructions report 0. The EXEC
    cycles follow the controller's rule (docs/fabric.md section 5): after an instruction that took one cycle
    a decode cycle, after a longer one none."""
    from ..gen.controller import CONTROLLER_TIMING
    from ..gen.isa import decode_op
    out = []
    e = CONTROLLER_TIMING.start
    for pc, done in enumerate(stamps):
        op, _ = decode_op(program.cfg, program.code[pc])
        waits = op in (Opcode.DSYNC.value, Opcode.SYNC.value)
        out.append((e, done - e if waits else 0))
        e = done + 1 + (CONTROLLER_TIMING.prefetched if done > e else CONTROLLER_TIMING.short)
    return out


def check_hazards(program, stamps: list[int] | None = None) -> list[str]:
    """Every overlap, in time and in on-chip words, of a ``DMA`` with the compute instructions (activation
    memory) or with the loader's reads (weight memory), by the predicted timing (``stamps``, default
    :func:`~cimforge.compiler.cost.program_timing`): the DMA engine has its own memory ports, so the compiler
    alone keeps its words apart (docs/memory.md section 3). The instruction-set model moves a tile at once and
    cannot see such a race; this does. Returns one line per hazard (empty: none)."""
    from ..gen.dma import dma_command_cycles
    from ..gen.isa import decode_op
    from ..gen.loader import LOAD_TIMING
    from .cost import program_timing
    cfg = program.cfg
    stamps = program_timing(program) if stamps is None else stamps
    execs = sync_stalls(program, stamps)
    dma_free = load_free = 0
    dmas, loads, computes = [], [], []
    for pc, done in enumerate(stamps):
        op, a = decode_op(cfg, program.code[pc])
        e = execs[pc][0]
        if op == Opcode.DMA.value:
            pop = max(done + 1, dma_free)
            dma_free = pop + dma_command_cycles(cfg, a)
            span = (a["rows"] - 1) * a["stride"] + a["len"] if a["rows"] and a["len"] else 0
            dmas.append((pc, pop, dma_free, a["wmem"], a["addr"], span, a["store"]))
        elif op == Opcode.LOAD.value:
            pop = max(done + 1, load_free)
            load_free = pop + a["count"] + LOAD_TIMING.per_command
            loads.append((pc, pop, pop + a["count"] + LOAD_TIMING.overhead, a["src"], a["count"]))
        elif pc in program.access:
            computes.append((pc, e, done, *program.access[pc]))

    def meet(a0, n0, a1, n1):
        return a0 < a1 + n1 and a1 < a0 + n0

    out = []
    for pc, t0, t1, wmem, addr, n, store in dmas:
        if not n:
            continue
        if wmem:
            out += [f"pc {pc}: DMA into weight words {addr}..{addr + n - 1} in cycles {t0}..{t1} while LOAD pc "
                    f"{lp} reads {src}..{src + cnt - 1} in {l0}..{l1}"
                    for lp, l0, l1, src, cnt in loads if l0 <= t1 and t0 <= l1 and meet(addr, n, src, cnt)]
            continue
        for cp, c0, c1, reads, writes in computes:
            if c0 > t1 or t0 > c1:
                continue
            hit = writes + ([] if store else reads)
            if any(meet(addr, n, b, m) for b, m in hit):
                out.append(f"pc {pc}: DMA {'from' if store else 'into'} activation words {addr}..{addr + n - 1} in "
                           f"cycles {t0}..{t1} while {program.describe(cp)} uses them in {c0}..{c1}")
    return out
