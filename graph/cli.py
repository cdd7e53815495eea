"""``cimforge graph ALGO --graph NAME|FILE [--source V] [--preset P|--config F]``: a graph algorithm compiled for
the fabric, executed, checked and costed.

The report: the result summary; ``matches networkx`` (or how it differs: BFS, SSSP, CC exactly, components up
to relabelling, PageRank within :func:`cimforge.graph.golden.pagerank_bound`); the fabric's execution against
the golden model (``bit-exact``); with ``--rtl`` the algorithm on the generated fabric in Verilator in a closed loop
(:mod:`cimforge.graph.fabric`: ``bit-exact`` against the golden model, cycles measured and predicted; ``--rtl
engine``: each ``GBFS`` on the graph engine's RTL in Amaranth's simulator); cycles predicted; blocks processed and skipped;
utilisation; time and macro energy at the energy model's clock (:mod:`cimforge.synth.energy`); and the same
algorithm's time on this CPU (scipy.sparse.csgraph and networkx, measured in the same run), as a ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ..cli import add_config_options, config_from_options
from ..errors import UserError

__all__ = ["add_arguments", "run", "analyse", "report_lines", "cpu_time", "networkx_check"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .golden import ALGORITHMS
    p.add_argument("algo", choices=list(ALGORITHMS), help="the algorithm")
    p.add_argument("--graph", required=True, metavar="NAME|FILE",
                   help="karate, lesmis, florentine, davis, a generator spec (er:n=1000,p=0.01,seed=1; "
                        "ba:n=1000,m=5,seed=1; grid:30x30; wmax=W adds weights 1..W), a Matrix Market file "
                        "(.mtx) or an edge list")
    p.add_argument("--directed", action="store_true", help="read an edge list as directed")
    p.add_argument("--source", metavar="V", help="source vertex (BFS, SSSP; an id of the input; default: the "
                                                 "first vertex)")
    p.add_argument("--order", choices=("source", "dest"), help="block order (default: the one moving the "
                                                               "fewest vector words)")
    p.add_argument("--reorder", choices=("none", "rcm"), default="none",
                   help="renumber the vertices first (rcm: reverse Cuthill-McKee, fewer non-empty blocks)")
    p.add_argument("--rtl", nargs="?", const="verilator", choices=("verilator", "engine"),
                   help="also run on the RTL: 'verilator' (the default with --rtl): every round's programs on the "
                        "generated fabric in Verilator, bit-exact and cycles checked; 'engine': BFS's GBFS "
                        "instructions on the graph engine and macros in Amaranth's simulator (small graphs)")
    add_config_options(p)


def cpu_time(algo: str, graph, source: int | None, repeat: int = 3) -> dict:
    """Best-of-``repeat`` wall time of the algorithm on this CPU with scipy.sparse.csgraph (BFS:
    ``breadth_first_order``, SSSP: ``dijkstra``, CC: ``connected_components``, PageRank: power iteration on a
    CSR matrix with the golden model's iteration count) and networkx, in seconds."""
    import networkx as nx
    import scipy.sparse as sp
    from scipy.sparse import csgraph

    from .io import to_networkx
    a = graph.adjacency(weighted=(algo == "sssp")).astype(np.float64)
    g = to_networkx(graph)

    def pagerank_scipy():
        n = graph.n
        deg = np.asarray(a.sum(axis=1)).ravel()
        p = sp.diags(np.where(deg > 0, 1 / np.maximum(deg, 1), 0)) @ a
        pt = p.T.tocsr()
        x = np.full(n, 1 / n)
        for _ in range(100):
            xn = 0.85 * (pt @ x + x[deg == 0].sum() / n) + 0.15 / n
            if np.abs(xn - x).sum() < 1e-6:
                break
            x = xn

    jobs = {
        "bfs": (lambda: csgraph.breadth_first_order(a, source, directed=True),
                lambda: nx.single_source_shortest_path_length(g, source)),
        "sssp": (lambda: csgraph.dijkstra(a, directed=True, indices=source),
                 lambda: nx.single_source_dijkstra_path_length(g, source)),
        "cc": (lambda: csgraph.connected_components(a, directed=graph.directed, connection="weak"),
               lambda: list(nx.weakly_connected_components(g) if graph.directed else nx.connected_components(g))),
        "pagerank": (pagerank_scipy, lambda: nx.pagerank(g, weight=None, tol=1e-6)),
    }
    out = {}
    for name, fn in zip(("scipy", "networkx"), jobs[algo]):
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        out[name] = best
    return out


def networkx_check(algo: str, graph, values: np.ndarray, source: int | None) -> str:
    """``"matches networkx"`` or exactly how the result differs."""
    import networkx as nx

    from . import golden
    from .io import to_networkx
    g = to_networkx(graph)
    n = graph.n
    if algo in ("bfs", "sssp"):
        ref = (nx.single_source_shortest_path_length(g, source) if algo == "bfs"
               else nx.single_source_dijkstra_path_length(g, source))
        want = np.full(n, -1 if algo == "bfs" else golden.INF, dtype=np.int64)
        want[list(ref)] = list(ref.values())
        bad = np.flatnonzero(want != values)
        if not len(bad):
            return "matches networkx"
        v = bad[0]
        return f"differs from networkx at {len(bad)} vertices, first {graph.ids[v]!r}: {values[v]} != {want[v]}"
    if algo == "cc":
        comps = nx.weakly_connected_components(g) if graph.directed else nx.connected_components(g)
        want = np.empty(n, dtype=np.int64)
        for c in comps:
            want[list(c)] = min(c)
        # components up to relabelling: the partitions agree when labels map one to one
        pairs = set(zip(values.tolist(), want.tolist()))
        if len(pairs) == len(set(values.tolist())) == len(set(want.tolist())):
            return "matches networkx (components up to relabelling)"
        return f"differs from networkx: {len(set(values.tolist()))} components against {len(set(want.tolist()))}"
    ref = nx.pagerank(g, weight=None, tol=1e-10, max_iter=1000)
    want = np.array([ref[i] for i in range(n)])
    err = float(np.abs(values.astype(np.float64) / (1 << golden.FRAC_BITS) - want).sum())
    bound = golden.pagerank_bound(graph)
    verdict = "matches networkx" if err <= bound else "differs from networkx"
    return f"{verdict} within the stated bound (L1 error {err:.3g} <= {bound:.3g})" if err <= bound else \
        f"{verdict}: L1 error {err:.3g} > stated bound {bound:.3g}"


def _summary(algo: str, graph, values: np.ndarray) -> str:
    from . import golden
    if algo == "bfs":
        reached = values >= 0
        return f"{int(reached.sum())} of {graph.n} vertices reached, {int(values.max())} levels deep"
    if algo == "sssp":
        reached = values != golden.INF
        d = values[reached]
        return f"{int(reached.sum())} of {graph.n} vertices reached, distances max {int(d.max())}, " \
               f"mean {d.mean():.2f}"
    if algo == "cc":
        labels, sizes = np.unique(values, return_counts=True)
        return f"{len(labels)} components, largest {int(sizes.max())} vertices, {int((sizes == 1).sum())} isolated"
    top = np.argsort(-values, kind="stable")[:3]
    return "top ranks: " + ", ".join(f"{graph.ids[v]!r} {values[v] / (1 << golden.FRAC_BITS):.5f}" for v in top)


def _energy_pj(plan, run) -> float:
    """Macro energy of the run's operations (synth/energy.py's event model): MAC operations at ``ab = 8``,
    ``wb = 1`` with their buffer reads; a BITWISE operation one row's cells, the total popcount tree and the
    result register. Relaxation arcs (no macro) and the controller are not priced."""
    from ..synth.energy import MacroOp, op_counts, op_energy_fj, tree_adders
    m = plan.cfg.macro
    if plan.algo == "pagerank":
        per = op_energy_fj(op_counts(m, MacroOp(ab=8, wb=1), with_buffers=True))
    elif plan.algo == "bfs":
        per = op_energy_fj({"cell": m.cols, "fa": tree_adders([1] * m.cols), "reg": m.cols, "buffer": m.cols})
    else:
        per = 0.0
    return run.macro_ops * per / 1000


#: The algorithms each ``--rtl`` choice runs.
RTL_ALGORITHMS = {"verilator": ("bfs", "sssp", "cc", "pagerank"), "engine": ("bfs",)}


def analyse(algo: str, graph, cfg, source=None, block_order=None, rtl: str | None = None, cpu: bool = True) -> dict:
    """Compile, execute and check ``algo`` on ``graph`` for ``cfg``; every figure of the report as a dict.
    ``rtl``: None, ``"verilator"`` (the fabric, :func:`cimforge.graph.fabric.run_on_fabric`) or ``"engine"``."""
    from ..synth.energy import TECH
    from . import golden
    from .compile import compile_graph, execute
    src = None
    if algo in ("bfs", "sssp"):
        src = graph.index(source) if source is not None else 0
    t0 = time.perf_counter()
    plan = compile_graph(graph, algo, cfg, block_order)
    run_ = execute(plan, src)
    t_exec = time.perf_counter() - t0
    ref = golden.run_golden(algo, graph, src)
    out = {
        "algo": algo, "graph": graph.name, "n": graph.n, "edges": graph.edges, "arcs": graph.arcs,
        "preset": cfg.name, "source": None if src is None else graph.ids[src],
        "summary": _summary(algo, graph, run_.result.values),
        "networkx": networkx_check(algo, graph, run_.result.values, src),
        "bit_exact": bool(np.array_equal(run_.result.values, ref.values)), "rounds": run_.result.rounds,
        "cycles": run_.cycles, "blocks": len(plan.blocks), "grid": plan.tiling.total,
        "processed": run_.processed, "skipped_empty": run_.skipped_empty,
        "skipped_inactive": run_.skipped_inactive, "resident": plan.resident,
        "order": plan.order_name, "order_figures": plan.order_figures, "macro_ops": run_.macro_ops,
        "macro_cycles": run_.macro_cycles, "clock_ns": TECH.clock_ns, "model_seconds": t_exec,
    }
    out["utilisation"] = run_.macro_cycles / (run_.cycles * cfg.fabric.n_macros) if run_.cycles else 0.0
    out["time_s"] = run_.cycles * TECH.clock_ns * 1e-9
    out["energy_uj"] = _energy_pj(plan, run_) * 1e-6
    if rtl:
        if algo not in RTL_ALGORITHMS[rtl]:
            raise UserError(f"--rtl {rtl}: runs {', '.join(RTL_ALGORITHMS[rtl])} so far (got {algo})")
        if rtl == "engine":
            from .run import run_bfs_rtl
            out["rtl"] = run_bfs_rtl(plan, src, run_)
        else:
            from .fabric import run_on_fabric
            out["fabric_rtl"] = x = run_on_fabric(plan, run_, source=src)
            x["networkx"] = networkx_check(algo, graph, x["values"], src)  # the fabric's own result
    if cpu:
        out["cpu"] = cpu_time(algo, graph, src)
    return out


def report_lines(r: dict) -> list[str]:
    """The report of :func:`analyse` as text lines."""
    lines = [f"{r['algo']} on {r['graph']} ({r['n']} vertices, {r['edges']} edges) on '{r['preset']}'"
             + (f", source {r['source']!r}" if r["source"] is not None else ""),
             f"result: {r['summary']} ({r['rounds']} rounds)",
             r["networkx"],
             "fabric execution: " + ("bit-exact with the golden model" if r["bit_exact"]
                                     else "DIFFERS from the golden model")]
    if "rtl" in r:
        x = r["rtl"]
        lines.append(f"RTL (graph engine + macros, Amaranth simulator): "
                     f"{'bit-exact' if x['bit_exact'] else 'DIFFERS'} on {x['instructions']} GBFS instructions, "
                     f"cycles measured {x['measured']} = predicted {x['predicted']}"
                     if x["measured"] == x["predicted"] else
                     f"RTL: cycles measured {x['measured']} != predicted {x['predicted']}")
    if "fabric_rtl" in r:
        x = r["fabric_rtl"]
        lines.append(f"RTL (generated fabric, Verilator): "
                     + ("bit-exact" if x["bit_exact"] else f"DIFFERS ({x['first_difference']})")
                     + f" with the golden model in a closed loop (each round from the fabric's own result) of "
                     f"{x['rounds']} rounds, {x['runs']} runs ({x['instructions']} instructions); "
                     f"cycles measured {x['measured']}, predicted {x['predicted']}"
                     + (", every retire stamp as predicted" if x["stamps_equal"] else
                        f", retire stamps differ: {x.get('first_stamp_difference')}"))
    lines += [
        f"cycles predicted: {r['cycles']} (controller, loader and block-instruction rules; "
        f"{'resident' if r['resident'] else 'streamed'} pages)",
        f"blocks: {r['blocks']} non-empty of {r['grid']}; over {r['rounds']} rounds {r['processed']} processed, "
        f"{r['skipped_empty']} skipped empty, {r['skipped_inactive']} skipped without active sources "
        f"(order '{r['order']}': {r['order_figures'][r['order']]['words']} vector words moved, "
        + ", ".join(f"'{k}' {v['words']}" for k, v in r["order_figures"].items()) + ")",
        f"utilisation: {100 * r['utilisation']:.2f} % of macro cycles compute ({r['macro_ops']} macro operations)",
        f"estimated at {1e3 / r['clock_ns']:.0f} MHz ({r['clock_ns']} ns, synth/energy.py's clock): "
        f"{r['time_s'] * 1e6:.1f} us, macro energy {r['energy_uj'] * 1e3:.3f} nJ",
    ]
    if "cpu" in r:
        c = r["cpu"]
        best = min(c.values())
        lines.append(f"CPU (this machine, same run, best of 3): scipy.sparse {c['scipy'] * 1e6:.1f} us, networkx "
                     f"{c['networkx'] * 1e6:.1f} us; fabric speed-up over the faster {best / r['time_s']:.2f}x "
                     f"(fabric: predicted cycles at the stated clock, graph already in its pages or weight "
                     f"memory, host round trips between rounds not counted; CPU: one core, graph in memory)")
    return lines


def run(args: argparse.Namespace) -> int:
    from .io import load_graph
    cfg = config_from_options(args)
    graph = load_graph(args.graph, directed=args.directed)
    if args.reorder == "rcm":
        from .tiling import rcm_permutation
        graph = graph.permuted(rcm_permutation(graph))
    r = analyse(args.algo, graph, cfg, args.source, args.order, rtl=args.rtl)
    print("\n".join(report_lines(r)))
    ok = r["bit_exact"] and r["networkx"].startswith("matches")
    if "fabric_rtl" in r:
        x = r["fabric_rtl"]
        ok = ok and x["bit_exact"] and x["stamps_equal"] and x["measured"] == x["predicted"] == r["cycles"]
    if "rtl" in r:
        ok = ok and r["rtl"]["bit_exact"] and r["rtl"]["measured"] == r["rtl"]["predicted"]
    return 0 if ok else 1
