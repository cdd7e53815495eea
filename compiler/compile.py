"""Compile a layer-IR graph (:mod:`cimforge.golden.ir`) into a fabric program.

:func:`compile_graph` runs named passes over a :class:`~cimforge.compiler.state.CompileState` (:data:`PASSES`,
in order): check the configuration can run int8 layers; place every tensor of every image in the activation
memory; choose a split (:class:`~cimforge.compiler.cost.Parallelism`) per weighted layer; plan its passes
(:mod:`cimforge.compiler.planning`) and decide whether all weights stay resident (else they stream layer by
layer into a ring of pages, the next pass's loads overlapping the current pass); place weights, descriptors and
parameters; put the steps in program order; assign pages; emit the instructions. What is particular to a layer
kind (its plan, its weights, its instructions) is its lowering's (:data:`cimforge.compiler.lowering.LOWERINGS`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..config import INT8_BITS, CimConfig
from ..gen.isa import Opcode, lanes, role_layout
from ..golden.ir import Graph
from .cost import Parallelism
from .concat_placement import place_unaligned_concats
from .fusion import fuse_graph
from .zero_points import expand_weight_zero_points
from .lowering import lowering_for
from .lowering.mac import emit_loads, weight_loads
from .memory import (MEMORY_MODES, ProgramTooLong, allocate_by_liveness, assign_band_pages, emit_external, order_bands,
                     stage_weights, weight_words)
from .planning import mac_plan
from .precision import precision_for
from .program import Program, TensorPlace
from .state import CompileState, TensorLayouts, emit_instr, pack_checked
from .tiling import CompileError, beyond_range, rowpack_ok

__all__ = ["compile_graph", "max_batch", "rewrite_for_fabric", "PASSES"]


def rewrite_for_fabric(graph: Graph, cfg: CimConfig) -> Graph:
    """``graph`` in the layers the engines run, exactly: weights with zero points as int8 parts over copies of
    the input (:mod:`cimforge.compiler.zero_points`), concatenations of partial words as placements and adds
    (:mod:`cimforge.compiler.concat_placement`); every original tensor keeps its name and codes."""
    return place_unaligned_concats(expand_weight_zero_points(graph), lanes(cfg))


def max_batch(graph: Graph, cfg: CimConfig) -> int:
    """How many images' tensors (every tensor kept) fit the activation memory at once."""
    lay = TensorLayouts(rewrite_for_fabric(graph, cfg))
    L = lanes(cfg)
    per = sum(h * w * -(-c // L) for name, (c, h, w) in lay.phys.items() if lay.owner[name] == name)
    return max(0, cfg.fabric.act_depth // per)


def compile_graph(graph: Graph, cfg: CimConfig, *, batch: int = 1,
                  parallelism: dict[str, Parallelism] | None = None, stream: bool | None = None,
                  merge_images: bool = True, memory: str = "auto",
                  input_ranges: dict[str, tuple[int, int]] | None = None, fuse: bool = True) -> Program:
    """Compile ``graph`` for ``cfg``.

    Parameters
    ----------
    batch : int
        Images per run; every tensor of every image keeps its own place (so the host can check them all).
    parallelism : dict, optional
        Layer name -> split; other weighted layers get :func:`~cimforge.compiler.cost.choose_parallelism`.
    stream : bool, optional
        Force weight streaming (True) or residency (False); default: resident when the pages hold all weights.
    merge_images : bool
        One ``MAC`` pass per layer covers every image of the run (its positions run over all images, so the
        pass's fixed set-up and drain are paid once per run, and streamed weights are loaded once per run);
        the program then runs layer by layer. False: every image has its own passes, image by image.
    memory : {"auto", "onchip", "liveness", "external"}
        Where graph tensors live (:data:`~cimforge.compiler.memory.MEMORY_MODES`): ``auto`` keeps them in the
        activation memory when every tensor of every image fits it and the weights fit the weight memory, else
        in the external memory, each layer then running in row bands staged by ``DMA``
        (:mod:`cimforge.compiler.memory`; images one after another). ``liveness`` keeps them on chip with a
        tensor's words reused after its last reader (the host then reads back ``Program.kept`` only).
    input_ranges : dict, optional
        Graph input name -> ``(lo, hi)``: the codes the host gives that input (a clamp of its codes applied on
        the host side, :func:`cimforge.codesign.importing.host_input_clamps`); its readers then run at the
        activation precision that range needs (:mod:`cimforge.compiler.precision`). Default: the dtype's range.
    fuse : bool
        Run each depthwise 1x1 layer that is a convolution's only reader (an unfoldable BatchNormalization) as
        the epilogue of that convolution's passes (:func:`cimforge.compiler.fusion.fuse_graph`): the program's
        graph (``Program.graph``) is then the fused one, and the fused-away tensors are not written. Ignored
        (no fusion) on a fabric built without the epilogue (``fabric.mac_epilogue = false``).

    Raises
    ------
    CompileError
        A layer kind, shape or size the fabric cannot run, or memories too small; the message names the layer
        or tensor and the limit.
    """
    check_config(cfg)
    graph = rewrite_for_fabric(graph, cfg)
    graph = fuse_graph(graph) if fuse and cfg.fabric.mac_epilogue else graph  # fused passes need the epilogue
    if not isinstance(batch, int) or batch < 1:
        raise CompileError(f"batch = {batch!r}: allowed an integer >= 1")
    if memory not in MEMORY_MODES:
        raise CompileError(f"memory = {memory!r}: allowed {', '.join(MEMORY_MODES)}")
    parallelism = dict(parallelism or {})
    unknown = set(parallelism) - {layer.name for layer in graph.weighted_layers}
    if unknown:
        raise CompileError(f"parallelism given for {sorted(unknown)}: not weighted layers of graph {graph.name!r}")
    for pipelined in (True, False):  # external mode: the fewest bands when pipelined bands overflow the program
        prog = Program(cfg=cfg, graph=graph, batch=batch)
        state = CompileState(graph, cfg, batch, merge_images, stream, parallelism, prog, TensorLayouts(graph))
        state.memory = memory
        state.pipelined_bands = pipelined
        state.input_ranges = dict(input_ranges or {})
        try:
            for compile_pass in PASSES:
                compile_pass(state)
        except ProgramTooLong:
            if not (pipelined and state.external):
                raise
            continue
        return prog


# -- passes ----------------------------------------------------------------------------------------------------


def check_config(cfg: CimConfig) -> None:
    """The macros must take int8 weights and activations."""
    m = cfg.macro
    if m.max_wb < INT8_BITS:
        raise CompileError(f"int8 weights need macro.max_wb = {INT8_BITS}, the configuration has {m.max_wb}")
    if m.max_ab < INT8_BITS:
        raise CompileError(f"int8 activations need macro.max_ab = {INT8_BITS}, the configuration has {m.max_ab}")


def check_weights(state: CompileState) -> None:
    """Weights with a zero point left after :func:`~cimforge.compiler.zero_points.expand_weight_zero_points`
    (an N-D matrix product's, whose kind the fabric does not run either) are refused by name."""
    for layer in state.graph.weighted_layers:
        if layer.has_weight_zero_point:
            zps = sorted(set(layer.weight_zero_point.tolist()))
            raise CompileError(f"layer {layer.name!r}: weight zero point(s) {zps[:4]}{' ...' if len(zps) > 4 else ''}"
                               f": allowed 0 on this layer kind (convolutions and dense layers run them over copies "
                               f"of their input, compiler/zero_points.py)")


def assign_precision(state: CompileState) -> None:
    """Each weighted layer's macro precision (:mod:`cimforge.compiler.precision`: ``wb`` from its weight codes,
    ``ab`` from its input's code range); one the macro cannot run is refused by layer name."""
    for layer in state.graph.weighted_layers:
        precision_for(state, layer)


def place_tensors(state: CompileState) -> None:
    """Every tensor of every image in the activation memory, the images of a tensor back to back (so one MAC
    pass walks all images of a layer: image i of a tensor is i * words further on); aliases share their
    owner's words. One-channel graph inputs are stored row-packed where every reader can walk them so.
    In external mode (``memory``; ``auto`` when the tensors or the weights do not fit on chip) the same layout
    is in the external memory, and images run one after another (:mod:`cimforge.compiler.memory`)."""
    graph, cfg, prog, lay, batch = state.graph, state.cfg, state.prog, state.layouts, state.batch
    L = lanes(cfg)
    state.rowpacked = _rowpacked_inputs(graph, lay, cfg)
    addr = 0
    for name, t in graph.tensors.items():
        c, h, w = lay.phys[name]
        owner = lay.owner[name]
        place = TensorPlace(name, 0, tuple(t.shape), (c, h, w), 0, -(-c // L), t.dtype, name in state.rowpacked)
        for i in range(batch):
            base = prog.tensors[(i, owner)].base if owner != name else addr + i * place.words
            prog.tensors[(i, name)] = replace(place, image=i, base=base)
        if owner == name:
            addr += batch * place.words
    f = cfg.fabric
    if state.memory == "liveness":
        if not state.merge_images:  # image by image, an image's tensors would overwrite the last image's
            raise CompileError("memory 'liveness' (--memory liveness) runs layer by layer over the images: allowed "
                               "with merged image passes (merge_images=True; without --per-image-passes)")
        addr = allocate_by_liveness(state)
    external = state.memory == "external" or (state.memory == "auto" and (
        addr > f.act_depth or weight_words(state) > f.weight_depth))
    if external:
        if addr > f.ext_depth:
            raise CompileError(f"external memory too small: {batch} image(s) of graph {graph.name!r} need {addr} "
                               f"words, fabric.ext_depth = {f.ext_depth}: allowed fabric.ext_depth >= {addr}"
                               + beyond_range(cfg, "fabric", "ext_depth", addr))
        state.external = prog.external = True
        state.ext_used = addr
        state.merge_images = False
    elif addr > f.act_depth:
        fit = max_batch(graph, cfg)
        if state.memory == "liveness":
            at = f" (the most when layer {state.peak_layer!r} writes its output)" if state.peak_layer else ""
            raise CompileError(f"activation memory too small: {batch} image(s) of graph {graph.name!r} need {addr} "
                               f"words with liveness reuse{at}, fabric.act_depth = {f.act_depth}: allowed "
                               f"fabric.act_depth >= {addr}, or memory 'external' (--memory external)")
        allowed = f"batch <= {fit}" if fit else f"fabric.act_depth >= {addr // batch}"
        name, words = max(((n, p.words) for (i, n), p in prog.tensors.items() if i == 0 and lay.owner[n] == n),
                          key=lambda x: x[1])
        big = next((f"layer {layer.name!r}'s output" for layer in graph.layers if layer.output.name == name),
                   f"input {name!r}")
        raise CompileError(f"activation memory too small: {batch} image(s) of graph {graph.name!r} need {addr} words "
                           f"with every tensor kept (the largest: {big}, {words} words an image), fabric.act_depth = "
                           f"{f.act_depth}: allowed {allowed}, or memory 'liveness' or 'external' (--memory)")


def _rowpacked_inputs(graph: Graph, lay: TensorLayouts, cfg: CimConfig) -> set[str]:
    """Graph inputs stored row-packed: one-channel inputs read only by convolutions that can walk them so
    (:func:`~cimforge.compiler.tiling.rowpack_ok`), with no alias (a flatten reads pixels)."""
    L, rows = lanes(cfg), cfg.macro.rows
    out = set()
    for t in graph.inputs:
        readers = [layer for layer in graph.layers if any(x.name == t.name for x in layer.inputs)]
        aliased = any(lay.owner[n] == t.name and n != t.name for n in lay.owner)
        if readers and not aliased and all(rowpack_ok(layer, L, rows) for layer in readers):
            out.add(t.name)
    return out


def choose_splits(state: CompileState) -> None:
    """Each weighted layer's lowering plans its geometry and split (``state.plans``)."""
    for layer in state.graph.layers:
        lowering = lowering_for(layer)
        if lowering.plan is not None:
            lowering.plan(state, layer)


def plan_passes(state: CompileState) -> None:
    """The passes of every plan; all weights resident when every plan's pages fit the macros at once (or as
    forced), else plans whose passes are small enough to double-buffer where possible."""
    cfg, P = state.cfg, state.cfg.macro.pages
    for gp in state.plans.values():
        gp.plan = mac_plan(gp.geom, cfg, gp.par)
    total_pages = sum(gp.plan.total_pages for gp in state.plans.values())
    resident = total_pages <= P if state.stream is None else not state.stream
    if resident and total_pages > P:
        raise CompileError(f"weights need {total_pages} pages per macro, macro.pages = {P}: cannot be resident "
                           f"(use stream=True)")
    if not resident:
        for gp in state.plans.values():
            gp.plan = mac_plan(gp.geom, cfg, gp.par, pages_avail=max(gp.plan.k_rounds, P // 2))
    state.prog.resident = resident


def tile_and_place_weights(state: CompileState) -> None:
    """Each layer's lowering writes its weights, descriptors and parameters; then one role table per distinct
    split (one word per macro, macro ``m = (bi * ki + kk) * no + nn``)."""
    prog, cfg = state.prog, state.cfg
    ends = []  # (layer, weight, parameter, descriptor words so far): the layer that overflows a memory
    for layer in state.graph.layers:
        lowering = lowering_for(layer)
        if lowering.place is not None:
            lowering.place(state, layer)
            ends.append((layer.name, len(prog.wmem), len(prog.pmem), len(prog.dmem)))
    rlay = role_layout(cfg)
    for key, gp in state.plans.items():
        par = gp.par
        if par in state.role_base:
            continue
        state.role_base[par] = len(prog.dmem)
        for m in range(cfg.fabric.n_macros):
            nn, kk, bi = m % par.out_ch, (m // par.out_ch) % par.in_ch, m // (par.out_ch * par.in_ch)
            en = m < par.macros
            prog.dmem.append(pack_checked(key[0], rlay, {"bi": bi if en else 0, "kk": kk if en else 0,
                                                         "nn": nn if en else 0, "en": int(en)}))
    for k, (what, mem, field_) in enumerate((("weight", prog.wmem, "weight_depth"),
                                             ("parameter", prog.pmem, "param_depth"),
                                             ("descriptor", prog.dmem, "desc_depth"))):
        depth = getattr(cfg.fabric, field_)
        if len(mem) > depth and not (state.external and what == "weight"):  # external: stage_weights
            past = next((e[0] for e in ends if e[1 + k] > depth), None)  # role tables follow the layers'
            at = f" (layer {past!r} is the first past it)" if past else ""
            raise CompileError(f"{what} memory too small for graph {state.graph.name!r}: needs {len(mem)} words"
                               f"{at}, fabric.{field_} = {depth}: allowed fabric.{field_} >= {len(mem)}"
                               + beyond_range(cfg, "fabric", field_, len(mem)))
    if state.external:
        stage_weights(state)


def order_steps(state: CompileState) -> None:
    """Program order: merged, layer by layer with each step over every image; else image by image; in external
    mode image by image, layer by layer, band by band (:func:`~cimforge.compiler.memory.order_bands`)."""
    if state.external:
        order_bands(state)
        return
    runs = [(0, state.batch)] if state.merge_images else [(i, 1) for i in range(state.batch)]
    for image, images in runs:
        for layer in state.graph.layers:
            state.steps += lowering_for(layer).steps(state, layer, image, images)
    state.set_order([st.mac for st in state.steps if st.mac is not None])


def assign_pages(state: CompileState) -> None:
    """Pages of each pass: resident weights one after another (every image's passes use the first run's),
    streamed weights in a ring; then the loads that fill them (external mode:
    :func:`~cimforge.compiler.memory.assign_band_pages`)."""
    if state.external:
        assign_band_pages(state)
        return
    P, resident = state.cfg.macro.pages, state.resident
    first = [mp for mp in state.order if mp.image == 0]
    ptr = 0
    for mp in first if resident else state.order:
        if ptr + mp.pages > P:
            ptr = 0
        mp.page_base = ptr
        ptr += mp.pages
    if resident:  # every later run's passes match the first run's one to one
        runs: dict[int, list] = {}
        for mp in state.order:
            runs.setdefault(mp.image, []).append(mp)
        for run in runs.values():
            for mp, mp0 in zip(run, first):
                mp.page_base = mp0.page_base
    for mp in state.order:
        mp.loads = weight_loads(mp, state)


def emit(state: CompileState) -> None:
    """The instructions: resident weights loaded by a prologue ending in ``SYNC`` (else the first pass's loads),
    each step by its layer's lowering, ``END`` (external mode: :func:`~cimforge.compiler.memory.emit_external`)."""
    if state.external:
        emit_external(state)
        return
    prog = state.prog
    if state.resident:
        for mp in state.order:
            if mp.image == 0:
                emit_loads(state, mp)
        emit_instr(state, Opcode.SYNC, None, None, "weights resident")
        prog.prologue = list(range(len(prog.code)))
    elif state.order:
        emit_loads(state, state.order[0])
    for step in state.steps:
        lowering_for(step.layer).emit(state, step)
    emit_instr(state, Opcode.END, None, None, "end")
    cfg = state.cfg
    if len(prog.code) > cfg.controller.program_depth:
        raise CompileError(f"program of {len(prog.code)} instructions for batch {state.batch}: "
                           f"controller.program_depth = {cfg.controller.program_depth}: lower the batch")
    prog.options = {"stream": not state.resident, "memory": "onchip"}


#: The passes of :func:`compile_graph`, in order.
PASSES: tuple[Callable[[CompileState], None], ...] = (
    check_weights, assign_precision, place_tensors, choose_splits, plan_passes, tile_and_place_weights, order_steps,
    assign_pages, emit)
