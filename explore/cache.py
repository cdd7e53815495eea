"""The result cache of ``cimforge explore``: one JSON file per (configuration, model, tool version), written
atomically, so that a rerun computes only new points and an interrupted run resumes where it stopped.

The key is a SHA-256 of the configuration (without its name, :func:`cimforge.explore.space.config_key`), the
model's ONNX bytes (their SHA-256), what was asked (the evaluation, or an RTL check with its image count and
seed) and :func:`tool_version`: cimforge's version, :data:`RESULT_VERSION` and a hash of the sources of every
package a result depends on (generator, compiler, cost model, golden model, simulation, synthesis, explore), so
a change to any of them makes new keys and a stale result is never reused. A corrupt or truncated entry reads
as missing (:func:`cimforge.outputs.read_json_cache` removes it) and is computed again.

Only outcomes are cached (``ok``, ``no_fit``, an RTL ``pass`` or ``fail``); an error (a crash, a lost worker
three times over) is not, so the next run tries that point again.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from .. import __version__
from ..outputs import cache_dir, read_json_cache, write_atomic

__all__ = ["ResultCache", "tool_version", "result_key", "RESULT_VERSION", "default_cache_dir", "CACHED_STATUSES"]

#: Bumped when what a result holds changes.
RESULT_VERSION = 1
#: Result statuses worth keeping.
CACHED_STATUSES = ("ok", "no_fit", "pass", "fail")
#: The packages (folders of the source tree) whose code decides a result.
_SOURCE_PACKAGES = ("cimforge", "gen", "compiler", "golden", "sim", "synth", "explore")


@functools.lru_cache(maxsize=1)
def tool_version() -> str:
    """``cimforge <version>, explore results <RESULT_VERSION>, sources <hash>`` (see the module docstring)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for pkg in _SOURCE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return f"cimforge {__version__}, explore results {RESULT_VERSION}, sources {h.hexdigest()[:16]}"


def result_key(config_key: str, model_digest: str, what: dict) -> str:
    """The cache key of one result: configuration, model, what was asked and the tool version."""
    text = json.dumps({"config": config_key, "model": model_digest, "what": what, "tool": tool_version()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def default_cache_dir() -> Path:
    """``$CIMFORGE_EXPLORE_CACHE``, else ``build/explore/cache`` in the project tree (the editable install),
    else the user's cache directory (:func:`cimforge.outputs.cache_dir`)."""
    return cache_dir("CIMFORGE_EXPLORE_CACHE", "explore")


class ResultCache:
    """Results on disk under ``root``, one ``<key[:2]>/<key>.json`` each.

    Parameters
    ----------
    root : path
        The cache folder (made on the first write).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        """The cached result, or None (missing or corrupt)."""
        data = read_json_cache(self.path(key))
        return data if isinstance(data, dict) and data.get("status") in CACHED_STATUSES else None

    def put(self, key: str, result: dict) -> bool:
        """Store ``result`` atomically when its status is an outcome; returns whether it was stored."""
        if result.get("status") not in CACHED_STATUSES:
            return False
        write_atomic(self.path(key), json.dumps(result, sort_keys=True) + "\n")
        return True
