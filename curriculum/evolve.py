"""One round of the self-evolving curriculum, as the phase driver runs it before phase ``phase``:
the failed tasks of phase ``phase - 1`` (grouped by site) -> the generator -> the filters -> the
task store (kept tasks for ``phase``, rejected ones with their reasons)."""

from __future__ import annotations

import logging
from typing import Any

from curriculum.filters import FeasibilityChecker, ValueFn, apply_filters
from curriculum.generator import TaskGenerator

log = logging.getLogger(__name__)


def _call(store, method: str, *args, **kwargs):
    """``store.method(...)`` on a :class:`~curriculum.task_store.TaskStore` or on its Ray actor."""
    fn = getattr(store, method)
    if hasattr(fn, "remote"):
        import ray

        return ray.get(fn.remote(*args, **kwargs))
    return fn(*args, **kwargs)


def evolve(store, generator: TaskGenerator, checker: FeasibilityChecker, cur, phase: int,
           value_fn: ValueFn | None = None, entities: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Generate, filter and store the new tasks of ``phase``; returns the counts for the phase summary.
    ``value_fn`` gives V(s0) of tasks (the learner's critic; None skips the value filter);
    ``entities`` names a few things per site for the prompts (e.g. ``SandboxCatalog.examples``)."""
    if not cur.enabled:
        return {"phase": phase, "enabled": False}
    failed = _call(store, "failed", phase - 1, cur.failed_max_success_rate)
    examples = {site: _call(store, "tasks", origin="seed", site=site) for site in failed}
    result = generator.generate(failed, phase, examples, entities)
    existing = _call(store, "entries")
    filtered = apply_filters(result.entries, cur=cur, checker=checker, existing=existing, value_fn=value_fn,
                             room=_call(store, "room", phase))
    added = _call(store, "add_generated", filtered.kept)
    _call(store, "reject", filtered.rejected)
    summary = {"phase": phase, "failed": {site: len(tasks) for site, tasks in failed.items()}, **result.stats,
               **filtered.counts(), "added": added["added"]}
    log.info("curriculum phase %d: %d failed tasks -> %d generated -> %d kept (%s)", phase,
             sum(summary["failed"].values()), len(result.entries), added["added"],
             ", ".join(f"{k} {v}" for k, v in filtered.counts().items() if k.startswith("rejected_")) or "none rejected")
    return summary
