"""``cimforge compile MODEL --preset P --out DIR``: compile a quantized ONNX model for a fabric and write what a
host loads, with the compiler's predictions.

Files written to ``DIR`` (each replaced atomically):

- ``program.hex``, ``wmem.hex``, ``pmem.hex``, ``dmem.hex``: the instruction memory and the weight, parameter and
  descriptor memory images from address 0, one word per line in hexadecimal (``$readmemh`` format), or with
  ``--format npy`` as ``.npy`` files: ``uint64`` words when the memory is at most 64 bits wide, else
  ``(words, bytes)`` ``uint8`` little-endian;
- ``listing.txt``: one line per instruction: pc, word, predicted retire cycle
  (:func:`cimforge.compiler.cost.program_timing`), layer, image and the compiler's own text;
- ``cycles.json``: predicted cycles per layer and image, per run, the utilisation bound per layer, and the
  cycles its ``DSYNC``s wait on the external memory (``stall``);
- ``program.json``: what the files are (word widths, depths) and where every graph input and output of every
  image sits in the activation memory, or with ``tensors_in: external`` in the external memory (base word,
  words, shape, dtype);
- ``ext_init.hex`` (external mode, docs/memory.md section 8): the external memory words the host loads besides
  the inputs (the weights that do not fit the weight memory), one ``address word`` pair per line.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..cli import add_config_options, config_from_options
from .memory import MEMORY_MODES
from ..errors import UserError, int_at_least, output_dir, path_arg

__all__ = ["add_arguments", "run", "write_program", "predicted_layers", "listing"]

FORMATS = ("hex", "npy")
#: program memories written, and the host-map region each lives in
MEMORIES = (("program", "imem", "code"), ("wmem", "wmem", "wmem"), ("pmem", "pmem", "pmem"),
            ("dmem", "dmem", "dmem"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="quantized ONNX model (QOperator or QDQ form), or a committed digits model's name")
    add_config_options(p)
    p.add_argument("--out", required=True, type=path_arg, metavar="DIR", help="output directory")
    p.add_argument("--batch", type=int_at_least(1), default=1, metavar="B", help="images per run (default 1)")
    p.add_argument("--per-image-passes", action="store_true",
                   help="one MAC pass per layer and image (default: one per layer over the images of a run)")
    p.add_argument("--format", choices=FORMATS, default="hex", help="memory image files (default hex)")
    p.add_argument("--memory", choices=MEMORY_MODES, default="auto",
                   help="where tensors live: auto (on chip when every tensor and weight fits, else the external "
                        "memory, layers in row bands staged by DMA), onchip, liveness (on chip, words reused after "
                        "a tensor's last reader), external (default auto)")
    p.add_argument("--no-fuse", action="store_true",
                   help="run each depthwise 1x1 layer (an unfolded BatchNormalization) as a pass of its own instead "
                        "of in the MAC epilogue of the convolution it reads (compiler/fusion.py)")


def predicted_layers(prog) -> list[dict]:
    """Per layer: kind, predicted cycles of each image (:func:`~cimforge.compiler.cost.program_timing` stamps,
    measured as ``cimforge sim`` measures the RTL's trace), ideal cycles and utilisation bound."""
    from ..compiler.cost import program_timing
    from ..sim.fabric_check import layer_rows

    stamps = [{"pc": pc, "cycle": c, "op": None} for pc, c in enumerate(program_timing(prog))]
    per_image = [layer_rows(prog, stamps, image=i) for i in range(prog.batch)]
    out = []
    for i, r in enumerate(per_image[0]):
        cycles = [rows[i].predicted for rows in per_image]
        out.append({"layer": r.layer, "kind": r.kind, "predicted": cycles,
                    "ideal": round(r.ideal, 3) if r.ideal else None,
                    "utilisation": round(r.ideal / cycles[0], 6) if r.ideal and cycles[0] else None,
                    "bound": None if r.occupancy is None else round(r.occupancy, 6), "stall": r.stall})
    return out


def listing(prog) -> list[str]:
    """One line per instruction: pc, predicted retire cycle, op, layer, image, the compiler's own text (the
    instruction word is line ``pc + 1`` of ``program.hex``)."""
    from ..compiler.cost import program_timing

    stamps = program_timing(prog)
    lines = [f"# {prog.graph.name} on '{prog.cfg.name}', {prog.batch} image(s) per run",
             f"# {'pc':>3}  {'retire':>9}  {'op':<5} {'layer':<32} {'img':>3}  what the compiler says"]
    for info in prog.instrs:
        layer = info.layer or "-"
        image = "-" if info.image is None else str(info.image)
        lines.append(f"{info.pc:5d}  {stamps[info.pc]:>9}  {info.op:<5} {layer:<32} {image:>3}  {info.text}")
    return lines


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)  # a reader sees the old file or the new one, never half of one
    finally:
        if tmp.exists():
            tmp.unlink()


def _npy_words(words: list[int], width: int) -> np.ndarray:
    if width <= 64:
        return np.array([int(w) for w in words], dtype=np.uint64)
    nbytes = -(-width // 8)
    return np.array([list(int(w).to_bytes(nbytes, "little")) for w in words], dtype=np.uint8).reshape(-1, nbytes)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, arr)


def write_program(prog, out: Path, fmt: str = "hex") -> list[Path]:
    """Write ``prog``'s memory images, listing, predicted cycles and manifest to ``out`` (see the module
    docstring); returns the paths written."""
    from ..compiler.cost import program_timing
    from ..gen.isa import host_map

    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: allowed {', '.join(FORMATS)}")
    _, regions = host_map(prog.cfg)
    for name, region, attr in MEMORIES:  # every memory checked before any file is written: nothing half-written
        if len(getattr(prog, attr)) > regions[region].depth:
            raise UserError(f"{name}: {len(getattr(prog, attr))} words do not fit the {regions[region].depth}-word "
                            f"{region} of '{prog.cfg.name}'")
    written, files = [], {}
    for name, region, attr in MEMORIES:
        words = [int(w) for w in getattr(prog, attr)]
        width, depth = regions[region].width, regions[region].depth
        path = out / f"{name}.{fmt}"
        if fmt == "hex":
            digits = -(-width // 4)
            _atomic(path, lambda p: p.write_text("".join(f"{w:0{digits}x}\n" for w in words)))
        else:
            arr = _npy_words(words, width)
            _atomic(path, lambda p: _save_npy(p, arr))
        files[name] = {"file": path.name, "memory": region, "words": len(words), "width": width, "depth": depth}
        written.append(path)
    layers = predicted_layers(prog)
    stamps = program_timing(prog)
    cycles = {"model": prog.graph.name, "config": prog.cfg.name, "batch": prog.batch,
              "run_cycles": stamps[-1] + 1, "prologue_cycles": stamps[prog.prologue[-1]] + 1 if prog.prologue else 0,
              "per_image_cycles": [sum(layer["predicted"][i] for layer in layers) for i in range(prog.batch)],
              "layers": layers}
    places = {}
    for t in [*prog.graph.inputs, *(prog.graph.tensors[n] for n in prog.graph.outputs)]:
        places[t.name] = [{"image": i, "base": pl.base, "words": pl.words, "shape": list(pl.shape),
                           "dtype": pl.dtype, "rowpack": pl.rowpack}
                          for i in range(prog.batch) for pl in [prog.tensors[(i, t.name)]]]
    if prog.external:  # the external memory's initial contents besides the inputs (weights), address: word
        path = out / "ext_init.hex"
        _atomic(path, lambda p: p.write_text("".join(f"{a:x} {w:x}\n" for a, w in sorted(prog.ext_init.items()))))
        written.append(path)
    manifest = {"model": prog.graph.name, "config": prog.cfg.name, "batch": prog.batch, "format": fmt,
                "resident_weights": prog.resident, "memories": files,
                "tensors_in": "external" if prog.external else "activation",
                "inputs": [t.name for t in prog.graph.inputs], "outputs": list(prog.graph.outputs),
                "activation_places": places}
    texts = {"listing.txt": "\n".join(listing(prog)) + "\n", "cycles.json": json.dumps(cycles, indent=1) + "\n",
             "program.json": json.dumps(manifest, indent=1) + "\n"}
    for name, text in texts.items():
        _atomic(out / name, lambda p, text=text: p.write_text(text))
        written.append(out / name)
    # a previous compile's files this one does not write (ext_init.hex of an external-memory program, the
    # other format's images) would read as part of this program: the directory holds this compile's only
    stale = {f"{name}.{f}" for name, _, _ in MEMORIES for f in FORMATS} | {"ext_init.hex"}
    for name in sorted(stale - {p.name for p in written}):
        (out / name).unlink(missing_ok=True)
    return written


def run(args: argparse.Namespace) -> int:
    from ..compiler.compile import compile_graph
    from ..compiler.lowering.host import split_host_tail
    from ..golden.cli import resolve_model

    cfg = config_from_options(args)
    named = resolve_model(args.model)
    made = not Path(args.out).exists()
    out = output_dir("--out", args.out)  # made (and probed) before the compile's work, removed again on an error
    try:
        split = split_host_tail(named.graph)  # a trailing softmax is the host's (docs/operators.md)
        prog = compile_graph(split.fabric, cfg, batch=args.batch, merge_images=not args.per_image_passes,
                             memory=args.memory, fuse=not args.no_fuse)
        paths = write_program(prog, out, args.format)
    except BaseException:
        if made:
            shutil.rmtree(out, ignore_errors=True)
        raise
    cycles = json.loads((out / "cycles.json").read_text())
    print(f"{named.label} on '{cfg.name}': {len(prog.code)} instructions, {len(prog.wmem)} weight words, "
          f"{prog.batch} image(s) per run, weights {'resident' if prog.resident else 'streamed'}"
          + (f", tensors in the external memory ({len(prog.ext_init)} weight words there too)" if prog.external
             else ""))
    print(f"{'layer':<44} {'kind':<15} {'predicted':>9} {'ideal':>8} {'util':>6} {'bound':>6} {'stall':>7}")
    for layer in cycles["layers"]:
        pct = (lambda v: "-" if v is None else f"{100 * v:.1f}%")
        ideal = f"{layer['ideal']:.1f}" if layer["ideal"] else "-"
        cyc = layer["predicted"][0]
        cyc = f"{cyc:.0f}" if float(cyc).is_integer() else f"{cyc:.1f}"
        print(f"{layer['layer'][-44:]:<44} {layer['kind']:<15} {cyc:>9} {ideal:>8} "
              f"{pct(layer['utilisation']):>6} {pct(layer['bound']):>6} {layer['stall']:>7}")
    print(f"predicted: {cycles['run_cycles']} cycles per run, {cycles['per_image_cycles'][0]:.0f} per image (layers)")
    if split.tail:
        print(f"on the host side of a run: {', '.join(f'{layer.kind} {layer.name!r}' for layer in split.tail)}")
    print(f"wrote {', '.join(p.name for p in paths)} to {out}")
    return 0
