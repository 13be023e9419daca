"""TaskStore: every task the run trains on (seeds and generated ones, with lineage), their outcomes per
phase, and the generated tasks the filters rejected (with the reason), kept on disk and in memory.

A plain class (testable without Ray); :func:`remote_task_store` makes it a Ray actor that Ray restarts
when its process dies. The phase driver adds the seed tasks, records each finished trajectory's
outcome, asks for the failed tasks of a phase (grouped by site), and adds what the generator wrote
and the filters kept (or rejected).

Persistence contract (``<directory>/tasks.jsonl``, one event a line, the same as the replay buffer's):

- **Append + fsync per call.** Each event is one JSON line, written, flushed and ``os.fsync``'d before
  the call returns, so what a call acknowledged survives a crash. Three kinds of line:
  ``{"kind": "task", "entry": TaskEntry}`` (an active task), ``{"kind": "rejected", "entry": TaskEntry}``
  (a generated task a filter refused; ``entry.filter`` and ``entry.reason`` say why) and
  ``{"kind": "outcome", ...}`` (one trajectory's result on one task in one phase).
- **Nothing counted twice.** Tasks are keyed by id (re-adding one writes nothing and answers
  ``False``), rejections by id, outcomes by trajectory id (a trajectory recorded again after a
  restart, or a call Ray retried, is not counted again). Loading keeps the first line of each key.
- **Torn tails cut, corrupt lines skipped** (:mod:`webrl.jsonl_log`, as for the replay buffer): loading never fails
  on the file's contents; a torn last line (never acknowledged) is cut off the file.

Sites: a task's site is given when it is added, or else :func:`site_of` (``sandbox/shop-...`` ->
``shop``; other suites: the suite's name). Generated tasks take their parent's site.

Phases: a generated task's ``origin.phase`` is the phase it was generated *for* (from the failures of
the phase before); seeds have ``origin.phase`` None. The per-phase cap counts generated tasks by that
phase.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from webrl.jsonl_log import JsonlLog
from webrl.types import Task, Trajectory

log = logging.getLogger(__name__)

FILENAME = "tasks.jsonl"
SANDBOX_SITE = re.compile(r"sandbox/([a-z]+)-")


def site_of(task: Task) -> str:
    """The site a task works on: the sandbox site named in its id, else its suite."""
    m = SANDBOX_SITE.match(task.id)
    return m.group(1) if m else task.suite


class TaskEntry(BaseModel):
    """A task as the store keeps it: the task, its site and where it came from."""

    task: Task
    site: str = Field(..., description="The site the task works on (shop, admin, forum, a suite name, ...).")
    generator: str | None = Field(None, description="Who wrote it, e.g. 'engine:<model>' or 'openai:<model>'; None: a seed.")
    filter: str | None = Field(None, description="Rejected tasks: the filter that refused it (value, duplicate, feasibility, cap).")
    reason: str | None = Field(None, description="Rejected tasks: why, in words.")
    added_at: float = Field(default_factory=time.time)

    @property
    def phase(self) -> int | None:
        return self.task.origin.phase


class OutcomeRecord(BaseModel):
    """One trajectory's result on one task in one phase."""

    trajectory_id: str
    task_id: str
    phase: int
    success: bool
    mode: str = "train"  # train | eval


class TaskStore:
    def __init__(self, directory: str | os.PathLike, cap_per_phase: int = 500):
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / FILENAME
        self.cap_per_phase = cap_per_phase
        self._tasks: dict[str, TaskEntry] = {}
        self._rejected: dict[str, TaskEntry] = {}
        self._outcomes: dict[str, OutcomeRecord] = {}
        self._log = JsonlLog(self.path, "task store")
        self._log.replay(lambda raw: self._apply(json.loads(raw)))
        log.info("task store %s: %d tasks, %d rejected, %d outcomes", self.path, len(self._tasks),
                 len(self._rejected), len(self._outcomes))

    # ---- persistence ----

    def _apply(self, event: dict[str, Any]) -> bool:
        """Take one event into memory; False when its key is there already (nothing changes)."""
        kind = event.get("kind")
        if kind in ("task", "rejected"):
            entry = TaskEntry.model_validate(event["entry"])
            table = self._tasks if kind == "task" else self._rejected
            if entry.task.id in table:
                return False
            table[entry.task.id] = entry
            return True
        if kind == "outcome":
            rec = OutcomeRecord.model_validate(event["outcome"])
            if rec.trajectory_id in self._outcomes:
                return False
            self._outcomes[rec.trajectory_id] = rec
            return True
        raise ValueError(f"unknown event kind {kind!r} (task, rejected or outcome)")

    def _commit(self, events: list[dict[str, Any]]) -> int:
        """Apply the events whose key is new, write those durably; how many were new."""
        new = [e for e in events if self._apply(e)]
        self._log.append(json.dumps(e, separators=(",", ":")).encode() for e in new)
        return len(new)

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> TaskStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- adding tasks ----

    @staticmethod
    def _event(kind: str, entry: TaskEntry) -> dict[str, Any]:
        return {"kind": kind, "entry": entry.model_dump(mode="json")}

    def add_seeds(self, tasks: Iterable[Task], site: str | None = None) -> int:
        """Store seed tasks (site: given, or :func:`site_of` each); returns how many were new."""
        events = []
        for t in tasks:
            t = Task.model_validate(t)
            events.append(self._event("task", TaskEntry(task=t, site=site or site_of(t))))
        return self._commit(events)

    def generated_count(self, phase: int) -> int:
        """Generated tasks kept for ``phase``."""
        return sum(1 for e in self._tasks.values() if e.task.origin.kind == "generated" and e.phase == phase)

    def room(self, phase: int) -> int:
        """Generated tasks ``phase`` may still take under the per-phase cap."""
        return max(0, self.cap_per_phase - self.generated_count(phase))

    def add_generated(self, entries: Iterable[TaskEntry]) -> dict[str, int]:
        """Keep generated tasks (``task.origin.phase`` set), up to the per-phase cap: those past it are
        recorded as rejected by the ``cap`` filter. Returns ``{"added", "duplicates", "over_cap"}``."""
        counts = {"added": 0, "duplicates": 0, "over_cap": 0}
        for entry in entries:
            entry = TaskEntry.model_validate(entry)
            origin = entry.task.origin
            if origin.kind != "generated" or origin.phase is None:
                raise ValueError(f"task {entry.task.id!r} is not a generated task with a phase (origin {origin}); "
                                 "add seeds with add_seeds")
            if entry.task.id in self._tasks:
                counts["duplicates"] += 1
            elif self.room(origin.phase) == 0:
                reason = f"phase {origin.phase} already holds its cap of {self.cap_per_phase} generated tasks"
                self.reject([entry.model_copy(update={"filter": "cap", "reason": reason})])
                counts["over_cap"] += 1
            else:
                counts["added"] += self._commit([self._event("task", entry)])
        return counts

    def reject(self, entries: Iterable[TaskEntry]) -> int:
        """Record generated tasks a filter refused (``filter`` and ``reason`` set); how many were new."""
        events = []
        for entry in entries:
            entry = TaskEntry.model_validate(entry)
            if not entry.filter or not entry.reason:
                raise ValueError(f"rejected task {entry.task.id!r} needs its filter and reason")
            events.append(self._event("rejected", entry))
        return self._commit(events)

    # ---- outcomes ----

    def record_outcome(self, task_id: str, phase: int, success: bool, trajectory_id: str, mode: str = "train") -> bool:
        """Count one trajectory's result; False (nothing counted) when that trajectory was counted already."""
        rec = OutcomeRecord(trajectory_id=trajectory_id, task_id=task_id, phase=phase, success=success, mode=mode)
        return self._commit([{"kind": "outcome", "outcome": rec.model_dump()}]) == 1

    def record_trajectories(self, trajs: Iterable[Trajectory | dict[str, Any]]) -> int:
        """Count each trajectory's outcome (its task, phase, mode and success) with one fsync; how many were new."""
        events = []
        for t in trajs:
            t = Trajectory.model_validate(t)
            rec = OutcomeRecord(trajectory_id=t.id, task_id=t.task_id, phase=t.phase, success=t.success, mode=t.mode)
            events.append({"kind": "outcome", "outcome": rec.model_dump()})
        return self._commit(events)

    def outcomes(self, task_id: str, mode: str = "train") -> dict[int, dict[str, int]]:
        """Phase -> ``{"attempts", "successes"}`` of one task."""
        out: dict[int, dict[str, int]] = {}
        for rec in self._outcomes.values():
            if rec.task_id == task_id and rec.mode == mode:
                entry = out.setdefault(rec.phase, {"attempts": 0, "successes": 0})
                entry["attempts"] += 1
                entry["successes"] += int(rec.success)
        return dict(sorted(out.items()))

    def _phase_counts(self, phase: int, mode: str) -> dict[str, list[int]]:
        counts: dict[str, list[int]] = {}
        for rec in self._outcomes.values():
            if rec.phase == phase and rec.mode == mode:
                c = counts.setdefault(rec.task_id, [0, 0])
                c[0] += 1
                c[1] += int(rec.success)
        return counts

    def failed(self, phase: int, max_success_rate: float = 0.0, mode: str = "train") -> dict[str, list[Task]]:
        """Site -> tasks attempted in ``phase`` whose success rate there was <= ``max_success_rate``
        (default: never solved), in the order they were added."""
        counts = self._phase_counts(phase, mode)
        out: dict[str, list[Task]] = {}
        for task_id, entry in self._tasks.items():
            c = counts.get(task_id)
            if c and c[1] / c[0] <= max_success_rate:
                out.setdefault(entry.site, []).append(entry.task)
        return out

    # ---- look-up ----

    def entries(self, phase: int | None = None, origin: Literal["seed", "generated"] | None = None,
                site: str | None = None, status: Literal["active", "rejected"] = "active") -> list[TaskEntry]:
        """Entries matching every filter given (``None`` matches all), in the order they were added.
        ``phase`` matches the phase a task was generated for (seeds have none); ``status`` picks the
        active tasks or the rejected ones."""
        if status not in ("active", "rejected"):
            raise ValueError(f"status must be 'active' or 'rejected', got {status!r}")
        table = self._tasks if status == "active" else self._rejected
        return [e for e in table.values()
                if (phase is None or e.phase == phase)
                and (origin is None or e.task.origin.kind == origin)
                and (site is None or e.site == site)]

    def tasks(self, phase: int | None = None, origin: Literal["seed", "generated"] | None = None,
              site: str | None = None, status: Literal["active", "rejected"] = "active") -> list[Task]:
        """The tasks of :meth:`entries`."""
        return [e.task for e in self.entries(phase, origin, site, status)]

    def get(self, task_id: str) -> Task:
        return self.entry(task_id).task

    def entry(self, task_id: str) -> TaskEntry:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} in the task store at {self.path} ({len(self._tasks)} tasks); "
                           "list them with tasks(...)") from None

    def lineage(self, task_id: str) -> list[str]:
        """The task's ancestors, nearest first (parents, then theirs, ...), each once."""
        seen: list[str] = []
        frontier = list(self.entry(task_id).task.origin.parent_ids)
        while frontier:
            tid = frontier.pop(0)
            if tid in seen:
                continue
            seen.append(tid)
            if tid in self._tasks:
                frontier.extend(self._tasks[tid].task.origin.parent_ids)
        return seen

    def children(self, task_id: str) -> list[str]:
        """Ids of the active tasks generated with ``task_id`` among their parents."""
        return [tid for tid, e in self._tasks.items() if task_id in e.task.origin.parent_ids]

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def summary(self, phase: int | None = None) -> dict[str, Any]:
        """Counts for a phase summary: tasks by origin and site, generated kept/rejected for ``phase``
        (every phase when None) with the rejections per filter, and the phase's attempts and successes."""
        kept = [e for e in self._tasks.values() if e.task.origin.kind == "generated" and (phase is None or e.phase == phase)]
        rejected = [e for e in self._rejected.values() if phase is None or e.phase == phase]
        by_filter: dict[str, int] = {}
        for e in rejected:
            by_filter[e.filter or "?"] = by_filter.get(e.filter or "?", 0) + 1
        by_site: dict[str, int] = {}
        for e in self._tasks.values():
            by_site[e.site] = by_site.get(e.site, 0) + 1
        outs = [r for r in self._outcomes.values() if r.mode == "train" and (phase is None or r.phase == phase)]
        return {
            "tasks": len(self._tasks),
            "seeds": sum(1 for e in self._tasks.values() if e.task.origin.kind == "seed"),
            "generated": sum(1 for e in self._tasks.values() if e.task.origin.kind == "generated"),
            "sites": dict(sorted(by_site.items())),
            "kept": len(kept),
            "rejected": len(rejected),
            "rejected_by_filter": dict(sorted(by_filter.items())),
            "attempts": len(outs),
            "successes": sum(r.success for r in outs),
            "cap_per_phase": self.cap_per_phase,
        }


def remote_task_store(directory: str | os.PathLike, cap_per_phase: int = 500, *,
                      resources: dict[str, float] | None = None, **options):
    """Start a :class:`TaskStore` as a Ray actor that Ray restarts (reloading the file) when its process
    dies, retrying the calls in flight. ``resources``: custom Ray resources it asks for (e.g. the
    replay buffer's, ``ray.placement.replay_buffer``: both keep a file on their node's disk). ``options``
    override the defaults of ``ray.remote``."""
    import ray

    from webrl.cluster import placement_options

    defaults = {"max_restarts": -1, "max_task_retries": -1, "num_cpus": 0} | placement_options(resources or {})
    path = str(Path(directory).expanduser().resolve())  # the actor's process need not share our working directory
    return ray.remote(**(defaults | options))(TaskStore).remote(path, cap_per_phase)
