"""The fabric's controller: fetch, prefetch, decode, dispatch to the engines, trace stamping and counters.

Its timing (:data:`CONTROLLER_TIMING`) is what the cost model charges before each instruction executes.
"""

from __future__ import annotations

from .engine import ControllerTiming

__all__ = ["CONTROLLER_TIMING"]

#: FETCH and DECODE before a run's first instruction; DECODE after a one-cycle instruction (its EXEC addressed
#: the next word, the port delivers it a cycle later); nothing after a longer one (prefetched while it ran).
CONTROLLER_TIMING = ControllerTiming(start=2, short=1, prefetched=0)
