"""The search: which points of a space are evaluated, and their RTL spot checks.

* **Exhaustive** (small spaces): every point that meets the constraints.
* **NSGA-II** (large spaces; optuna's :class:`~optuna.samplers.NSGAIISampler`): the axes are categorical
  parameters; each generation of ``population`` points is asked of the study, evaluated together (in parallel on
  Dask) and told back with three objectives to minimise, area (mm^2), energy per inference (nJ, summed over the
  models) and latency (predicted cycles per inference, summed over the models). A point that a model does not
  fit is infeasible by the number of models it does not fit (``Trial.set_constraint`` from optuna 5 on, the
  sampler's ``constraints_func`` before), so feasible points rank first; a point that breaks a constraint, or
  makes no valid configuration, or that no model fits, is told as failed. The search stops after ``trials`` distinct points (or after ``4 x trials`` asks, when the space is
  too small to hold that many).

``search.method = "auto"`` is exhaustive when the space holds at most ``search.exhaustive_max`` points.

RTL spot checks: of the evaluated points that some model fits, ``ceil(rtl.fraction x evaluated points)`` (at
least one) are chosen by a seeded hash of their keys (the same points on every run), and every model that fits
them runs on the RTL for ``rtl.images`` inputs (:func:`~cimforge.explore.evaluate.rtl_check`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from ..config import config_to_dict
from .cache import result_key
from .runner import Job, Runner
from .space import Point, Space

__all__ = ["PointResult", "Exploration", "explore", "OBJECTIVES"]

#: The objectives (all minimised): key in :meth:`PointResult.objectives`, label.
OBJECTIVES = {"area_mm2": "area (mm^2)", "energy_nj": "energy per inference (nJ)",
              "latency_cycles": "latency (cycles per inference)"}


@dataclass
class PointResult:
    """One evaluated point: its results per model, and its RTL checks.

    Attributes
    ----------
    point : Point
    results : dict of str to dict
        Model label -> :func:`~cimforge.explore.evaluate.evaluate` result.
    rtl : dict of str to dict
        Model label -> :func:`~cimforge.explore.evaluate.rtl_check` result (spot-checked points only).
    """

    point: Point
    results: dict = field(default_factory=dict)
    rtl: dict = field(default_factory=dict)

    def fitting(self) -> list[str]:
        return [m for m, r in self.results.items() if r.get("status") == "ok"]

    @property
    def complete(self) -> bool:
        """Every model fits (and was evaluated without error)."""
        return bool(self.results) and len(self.fitting()) == len(self.results)

    @property
    def area_mm2(self) -> float | None:
        return next((self.results[m]["area_mm2"] for m in self.fitting()), None)

    def objectives(self, model: str | None = None, partial: bool = False) -> dict | None:
        """``{area_mm2, energy_nj, latency_cycles}`` of one model, or summed over every model (None unless all
        fit, or with ``partial`` over those that fit)."""
        models = [model] if model else list(self.results)
        fit = [m for m in models if m in self.fitting()]
        if not fit or (len(fit) < len(models) and not partial):
            return None
        return {"area_mm2": self.area_mm2,
                "energy_nj": sum(self.results[m]["energy_per_inference_nj"] for m in fit),
                "latency_cycles": sum(self.results[m]["cycles_per_inference"] for m in fit)}


@dataclass
class Exploration:
    """What :func:`explore` found.

    Attributes
    ----------
    space : Space
    models : list of ModelRef
    method : str
        ``"exhaustive"`` or ``"nsga2"``.
    points : list of PointResult
        Every evaluated point, in the order first evaluated.
    invalid : list of Point
        Points whose values make no valid configuration (with the reason), not evaluated.
    computed, cached, errors : int
        Jobs computed, answered from the cache, and ending in an error.
    """

    space: Space
    models: list
    method: str
    points: list = field(default_factory=list)
    invalid: list = field(default_factory=list)
    computed: int = 0
    cached: int = 0
    errors: int = 0

    @property
    def rtl_checks(self) -> list[tuple[PointResult, str, dict]]:
        return [(pr, m, r) for pr in self.points for m, r in pr.rtl.items()]


def _jobs(points: list[Point], models: list, synth_cache: str | None) -> list[Job]:
    return [Job(result_key(p.key, m.digest, {"kind": "eval"}), "eval", config_to_dict(p.config), m,
                (synth_cache,), f"{p.config.name}/{m.label}") for p in points for m in models]


def _evaluate(points: list[Point], models: list, runner: Runner, synth_cache: str | None,
              known: dict[str, PointResult]) -> list[PointResult]:
    new = [p for p in points if p.key not in known]
    results = runner.run(_jobs(new, models, synth_cache), desc="evaluate")
    for p in new:
        known[p.key] = PointResult(p, {m.label: results[result_key(p.key, m.digest, {"kind": "eval"})]
                                       for m in models})
    return [known[p.key] for p in points]


def _method(space: Space, method: str | None) -> str:
    method = method or space.search["method"]
    if method != "auto":
        return method
    n = sum(1 for v in space.value_tuples() if space.meets(v))
    return "exhaustive" if n <= space.search["exhaustive_max"] else "nsga2"


def _nsga2(space: Space, models: list, runner: Runner, synth_cache: str | None, trials: int, population: int,
           seed: int, known: dict[str, PointResult], invalid: dict[str, Point], log) -> list[PointResult]:
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # optuna 5 deprecates constraints_func for Trial.set_constraint; pyproject allows optuna >= 3.6
    new_api = hasattr(optuna.trial.Trial, "set_constraint")
    sampler = optuna.samplers.NSGAIISampler(
        population_size=population, seed=seed,
        **({} if new_api else {"constraints_func": lambda t: [t.user_attrs.get("models_not_fitting", 0.0)]}))
    study = optuna.create_study(directions=["minimize"] * len(OBJECTIVES), sampler=sampler)
    order: list[str] = []
    asks = 0
    generation = 0
    while len(order) < trials and asks < 4 * trials:
        batch = []
        while len(batch) < population and asks < 4 * trials:
            trial = study.ask()
            asks += 1
            values = tuple((name, trial.suggest_categorical(name, choices)) for name, choices in space.axes.items())
            point = space.make_point(values) if space.meets(values) else None
            if point is None or point.config is None:
                if point is not None:
                    invalid.setdefault(point.key, point)
                study.tell(trial, state=TrialState.FAIL)
                continue
            batch.append((trial, point))
        evaluated = _evaluate([p for _, p in batch], models, runner, synth_cache, known)
        for (trial, point), pr in zip(batch, evaluated):
            if point.key not in order:
                order.append(point.key)
            obj = pr.objectives(partial=True)
            if obj is None:
                study.tell(trial, state=TrialState.FAIL)
                continue
            violation = float(len(models) - len(pr.fitting()))
            if new_api:
                trial.set_constraint("models_not_fitting", violation)
            else:
                trial.set_user_attr("models_not_fitting", violation)
            study.tell(trial, [obj[k] for k in OBJECTIVES])
        generation += 1
        log(f"NSGA-II generation {generation}: {len(order)} distinct points evaluated ({asks} asked)")
    return [known[k] for k in order]


def explore(space: Space, models: list, runner: Runner, *, method: str | None = None, trials: int | None = None,
            rtl_fraction: float | None = None, rtl_images: int | None = None, synth_cache: str | None = None,
            log_dir: str | None = None, log=lambda text: None) -> Exploration:
    """Evaluate the space's points for every model (exhaustively or by NSGA-II), then spot-check a fraction of
    them on the RTL; every job goes through ``runner`` (its cache and backend).

    Parameters
    ----------
    method, trials, rtl_fraction, rtl_images
        Override the space file's ``search.method``, ``search.trials``, ``rtl.fraction``, ``rtl.images``.
        ``rtl_fraction = 0`` skips the RTL checks: for tests of the search alone (``cimforge explore`` always
        checks at least one point).
    synth_cache : str, optional
        Synthesis cache folder (default :func:`cimforge.synth.synthesize.default_cache_dir`).
    log_dir : str, optional
        Where the RTL runs' simulator logs go.
    """
    method = _method(space, method)
    ex = Exploration(space, models, method)
    known: dict[str, PointResult] = {}
    invalid: dict[str, Point] = {}
    if method == "exhaustive":
        points = space.points()
        for p in points:
            if p.config is None:
                invalid.setdefault(p.key, p)
        ex.points = _evaluate([p for p in points if p.config is not None], models, runner, synth_cache, known)
    else:
        s = space.search
        ex.points = _nsga2(space, models, runner, synth_cache, trials or s["trials"], s["population"], s["seed"],
                           known, invalid, log)
    ex.invalid = list(invalid.values())
    fraction = space.rtl["fraction"] if rtl_fraction is None else rtl_fraction
    images = space.rtl["images"] if rtl_images is None else rtl_images
    chosen = _spot_points(ex.points, fraction, space.search["seed"]) if fraction > 0 else []
    what = {"kind": "rtl", "images": images, "seed": 0}
    jobs = [Job(result_key(pr.point.key, m.digest, what), "rtl", config_to_dict(pr.point.config), m,
                (images, 0, log_dir), f"{pr.point.config.name}/{m.label}")
            for pr in chosen for m in models if m.label in pr.fitting()]
    results = runner.run(jobs, desc="RTL checks")
    for pr in chosen:
        for m in models:
            if m.label in pr.fitting():
                pr.rtl[m.label] = _judge(results[result_key(pr.point.key, m.digest, what)], pr.results[m.label])
    ex.computed, ex.cached, ex.errors = runner.computed, runner.cached, runner.errors
    return ex


def _spot_points(points: list[PointResult], fraction: float, seed: int) -> list[PointResult]:
    """``ceil(fraction x len(points))`` (at least one) of the points some model fits, by a seeded hash."""
    fits = [pr for pr in points if pr.fitting()]
    if not fits:
        return []
    n = min(len(fits), max(1, math.ceil(fraction * len(points))))
    rank = lambda pr: hashlib.sha256(f"{seed}:{pr.point.key}".encode()).hexdigest()  # noqa: E731
    return sorted(fits, key=rank)[:n]


def _judge(rtl: dict, predicted: dict) -> dict:
    """The RTL check, failed too when its measured cycles per inference differ from the point's prediction."""
    out = dict(rtl)
    if out.get("status") == "pass":
        bad = [c for c in out.get("measured_cycles_per_inference", []) if c != predicted["cycles_per_inference"]]
        if bad:
            out["status"] = "fail"
            out["reason"] = (f"measured {bad[0]} cycles per inference, predicted "
                             f"{predicted['cycles_per_inference']}")
    return out
