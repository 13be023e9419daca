"""ReplayBuffer: every finished trajectory, kept on disk and in memory, queried and sampled.

A plain class (testable without Ray); :func:`remote_buffer` makes it a Ray actor that Ray restarts
when its process dies. Rollout workers ``add`` each trajectory as it finishes; the phase driver and the
learner ``query``, ``sample`` and read ``stats``.

Persistence contract (``<directory>/trajectories.jsonl``, one ``Trajectory`` JSON per line):

- **Append + fsync per add.** ``add`` writes one line, flushes and ``os.fsync``s before it returns
  ``True``, so an acknowledged trajectory survives a crash of the process or the machine.
  ``add_many`` does the same with one fsync for the whole batch.
- **Dedup by id, on add and on load.** A trajectory's id is fixed before its episode starts, so a
  rerun after a crash carries the same id: ``add`` returns ``False`` and writes nothing when the id is
  stored already, and loading keeps the first line of an id. Nothing is counted twice. (Under Ray, an
  ``add`` that Ray retries after the actor died mid-call may answer ``False``: its first try stored it.)
- **Torn tails cut.** A crash mid-write leaves a last line without its newline, or one that is not
  valid JSON. Loading cuts it off the file (truncates to the last good newline, with a warning), so
  the next add starts on a clean line. Such a line was never acknowledged; its writer sends it again.
  A corrupt line in the middle of the file is skipped with a warning naming its line number; loading
  never fails on the file's contents.

Lines are written as ``Trajectory.model_dump_json()`` writes them, except that a non-finite float
(a ``-inf`` log-prob) is written ``-Infinity`` / ``NaN`` rather than ``null``, which would not load back.

Every trajectory is also kept in memory (id -> Trajectory, in insertion order), which bounds the
buffer to the RAM of the process that holds it. One buffer per directory: two processes appending
to the same file would each dedup only against what they loaded.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic_core

from webrl.jsonl_log import JsonlLog
from webrl.types import Outcome, Step, Trajectory

log = logging.getLogger(__name__)

FILENAME = "trajectories.jsonl"


@dataclass(frozen=True)
class SampledStep:
    """One step drawn by :meth:`ReplayBuffer.sample`: ``step`` is ``get(trajectory_id).steps[index]``."""

    trajectory_id: str
    index: int
    step: Step
    outcome: Outcome


def _line(traj: Trajectory) -> bytes:
    return pydantic_core.to_json(traj.model_dump(), inf_nan_mode="constants")


class ReplayBuffer:
    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory).expanduser()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / FILENAME
        self._trajs: dict[str, Trajectory] = {}
        self._log = JsonlLog(self.path, "replay buffer")
        self._log.replay(self._load_line)
        log.info("replay buffer %s: %d trajectories", self.path, len(self._trajs))

    # ---- persistence (webrl.jsonl_log: append + fsync, torn tails cut, corrupt lines skipped) ----

    def _load_line(self, raw: bytes) -> bool:
        traj = Trajectory.model_validate_json(raw)
        if traj.id in self._trajs:
            return False
        self._trajs[traj.id] = traj
        return True

    def _write(self, data: list[bytes]) -> None:
        self._log.append(data)

    def flush(self) -> None:
        """Push what was written to the disk (``add`` already does)."""
        self._log.flush()

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> ReplayBuffer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- ingest ----

    def add(self, traj: Trajectory | dict[str, Any]) -> bool:
        """Store one trajectory durably. ``False`` (nothing written) when its id is stored already.
        In process the model is kept as given, not copied: do not change it afterwards."""
        traj = Trajectory.model_validate(traj)
        if traj.id in self._trajs:
            return False
        self._write([_line(traj)])
        self._trajs[traj.id] = traj
        return True

    def add_many(self, trajs: Iterable[Trajectory | dict[str, Any]]) -> int:
        """Store the new ones among ``trajs`` with one fsync; returns how many were new."""
        new: dict[str, Trajectory] = {}
        for t in trajs:
            t = Trajectory.model_validate(t)
            if t.id not in self._trajs and t.id not in new:
                new[t.id] = t
        if new:
            self._write([_line(t) for t in new.values()])
            self._trajs.update(new)
        return len(new)

    # ---- look-up ----

    def get(self, id: str) -> Trajectory:
        try:
            return self._trajs[id]
        except KeyError:
            raise KeyError(f"no trajectory {id!r} in the replay buffer at {self.path} ({len(self)} stored); "
                           "list ids with ids(...) or find(prefix)") from None

    def find(self, prefix: str) -> list[str]:
        """Ids that start with ``prefix``, in insertion order."""
        return [i for i in self._trajs if i.startswith(prefix)]

    def _select(self, phase: int | None = None, success: bool | None = None, task_id: str | None = None,
                suite: str | None = None, mode: str | None = None) -> list[Trajectory]:
        return [t for t in self._trajs.values()
                if (phase is None or t.phase == phase)
                and (success is None or t.success == success)
                and (task_id is None or t.task_id == task_id)
                and (suite is None or t.suite == suite)
                and (mode is None or t.mode == mode)]

    def query(self, phase: int | None = None, success: bool | None = None, task_id: str | None = None,
              suite: str | None = None, mode: str | None = None) -> list[Trajectory]:
        """Trajectories matching every filter given (``None`` matches all), in insertion order."""
        return self._select(phase, success, task_id, suite, mode)

    def ids(self, phase: int | None = None, success: bool | None = None, task_id: str | None = None,
            suite: str | None = None, mode: str | None = None) -> list[str]:
        return [t.id for t in self._select(phase, success, task_id, suite, mode)]

    def count(self, phase: int | None = None, success: bool | None = None, task_id: str | None = None,
              suite: str | None = None, mode: str | None = None) -> int:
        return len(self._select(phase, success, task_id, suite, mode))

    def __len__(self) -> int:
        return len(self._trajs)

    def __contains__(self, id: object) -> bool:
        return id in self._trajs

    def stats(self, phase: int | None = None, success: bool | None = None, task_id: str | None = None,
              suite: str | None = None, mode: str | None = None) -> dict[str, Any]:
        """Counts over the matching trajectories: totals, and ``{episodes, successes}`` per phase and task."""
        trajs = self._select(phase, success, task_id, suite, mode)
        successes = sum(t.success for t in trajs)
        phases: dict[int, dict[str, int]] = {}
        tasks: dict[str, dict[str, int]] = {}
        for t in trajs:
            for key, table in ((t.phase, phases), (t.task_id, tasks)):
                entry = table.setdefault(key, {"episodes": 0, "successes": 0})
                entry["episodes"] += 1
                entry["successes"] += int(t.success)
        return {
            "trajectories": len(trajs),
            "steps": sum(len(t.steps) for t in trajs),
            "successes": successes,
            "success_rate": successes / len(trajs) if trajs else 0.0,
            "phases": dict(sorted(phases.items())),
            "tasks": tasks,
        }

    # ---- sampling ----

    def sample(self, n: int, *, phase: int | None = None, success: bool | None = None,
               task_id: str | None = None, suite: str | None = None, mode: str | None = None,
               unit: Literal["step", "trajectory"] = "step",
               seed: int | None = None) -> list[SampledStep] | list[Trajectory]:
        """``n`` distinct items drawn uniformly from the matching trajectories (all of them, shuffled,
        when there are fewer): ``SampledStep`` s for ``unit="step"``, ``Trajectory`` s for
        ``unit="trajectory"``. The same seed over the same contents draws the same items."""
        if n < 0:
            raise ValueError(f"sample size must be >= 0, got {n}")
        trajs = self._select(phase, success, task_id, suite, mode)
        rng = random.Random(seed)
        if unit == "trajectory":
            return rng.sample(trajs, min(n, len(trajs)))
        if unit != "step":
            raise ValueError(f"unit must be 'step' or 'trajectory', got {unit!r}")
        index = [(t, i) for t in trajs for i in range(len(t.steps))]
        return [SampledStep(t.id, i, t.steps[i], t.outcome) for t, i in rng.sample(index, min(n, len(index)))]


def remote_buffer(directory: str | os.PathLike, *, resources: dict[str, float] | None = None, **options):
    """Start a :class:`ReplayBuffer` as a Ray actor that Ray restarts (reloading the file) when its
    process dies, retrying the calls in flight. ``resources``: custom Ray resources it asks for
    (``ray.placement.replay_buffer``). ``options`` override the defaults of ``ray.remote``."""
    import ray

    from webrl.cluster import placement_options

    defaults = {"max_restarts": -1, "max_task_retries": -1, "num_cpus": 0} | placement_options(resources or {})
    # absolute: the actor's process need not share the caller's working directory
    return ray.remote(**(defaults | options))(ReplayBuffer).remote(str(Path(directory).expanduser().resolve()))
