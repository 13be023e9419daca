"""Fault injection for `webrl train` (DESIGN.md §5, fault tolerance), used by tests and drills only: nothing
in the production path imports it.

- :class:`Injector` runs a list of :class:`Fault` s in a background thread: each waits for its trigger (a
  predicate polled every ``poll_s``, e.g. "the run has stored 3 trajectories") and then acts (kills an actor
  or a process); what it did and when lands in ``Injector.done``.
- The kills: :func:`kill_actor` (``ray.kill(..., no_restart=False)``: Ray restarts it), :func:`kill_pid`
  (SIGKILL of an OS process), :func:`actor_pid` and :func:`ray_processes` to find the process to kill.
- :func:`seeded_points` draws the trigger points from a seed, so a failing run can be replayed.
- :func:`accounting` checks a run folder afterwards: every planned episode id stored exactly once in the
  replay buffer's file, none unplanned, the report's episode counts, no duplicate ids in the outcome ledger.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import psutil

from actors.replay_buffer import FILENAME as TRAJECTORIES
from webrl.train_scoring import FILENAME as OUTCOMES


def seeded_points(seed: int, n: int, low: int, high: int) -> list[int]:
    """``n`` trigger points drawn from ``[low, high]`` by ``seed`` (sorted; repeats allowed)."""
    rng = random.Random(seed)
    return sorted(rng.randint(low, high) for _ in range(n))


def kill_actor(handle) -> None:
    """SIGKILL the actor's process through Ray; Ray restarts it (its ``max_restarts``) and retries per its options."""
    import ray

    ray.kill(handle, no_restart=False)


def kill_pid(pid: int) -> None:
    """SIGKILL an OS process (a driver, a learner rank, a Ray worker found by :func:`ray_processes`)."""
    os.kill(pid, signal.SIGKILL)


def actor_pid(handle, timeout_s: float = 60) -> int:
    """The OS process id of an actor (asked through the actor: call it while the actor is idle)."""
    import ray

    return ray.get(handle.__ray_call__.remote(lambda self: os.getpid()), timeout=timeout_s)


def ray_processes(class_name: str, root: int | None = None) -> list[psutil.Process]:
    """Live Ray worker processes holding an actor of ``class_name`` (Ray titles them ``ray::<class>[.<method>]``)
    among the descendants of ``root`` (default: this process, which started the local cluster): never another
    cluster's on the same machine."""
    out = []
    for p in psutil.Process(root).children(recursive=True):
        try:
            cmd = p.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        title = cmd[0] if cmd else ""
        if title == f"ray::{class_name}" or title.startswith(f"ray::{class_name}."):
            out.append(p)
    return out


def jsonl_ids(path: Path) -> list[str]:
    """The ``id`` of every whole JSON line of a run file, in order, duplicates kept (a torn or corrupt line is
    skipped, as loading does)."""
    if not path.exists():
        return []
    ids = []
    for line in path.read_bytes().split(b"\n"):
        try:
            ids.append(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            continue
    return ids


def stored_count(run: Path) -> int:
    """Trajectories in ``<run>/trajectories.jsonl`` (lines; cheap enough to poll as a trigger)."""
    path = Path(run) / TRAJECTORIES
    return path.read_bytes().count(b"\n") if path.exists() else 0


@dataclass
class Fault:
    """One injected fault: ``act`` runs once ``when()`` is true; ``act``'s return value is recorded."""

    name: str
    when: Callable[[], bool]
    act: Callable[[], object]


@dataclass
class Injector:
    """Runs ``faults`` in order in a daemon thread (start with :meth:`start`, end with :meth:`stop`)."""

    faults: list[Fault]
    poll_s: float = 0.1
    done: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-injector", daemon=True)

    def start(self) -> Injector:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        for f in self.faults:
            while not self._stop.is_set():
                try:
                    if f.when():
                        self.done.append({"fault": f.name, "at_s": round(time.monotonic() - self._t0, 2),
                                          "result": f.act()})
                        break
                except Exception as e:  # noqa: BLE001 - recorded; the test reports it
                    self.errors.append(f"{f.name}: {type(e).__name__}: {e}")
                    break
                self._stop.wait(self.poll_s)

    def stop(self) -> list[dict]:
        """Stop waiting for faults not yet triggered; returns what was done."""
        self._stop.set()
        self._thread.join(timeout=30)
        return self.done


def accounting(run: Path, planned: dict[int, list[str]], report: dict | None = None) -> dict:
    """What a run folder holds against the episodes planned per phase (``{phase: [episode ids]}``):
    ``missing`` (planned, not stored), ``duplicates`` (stored on more than one line of the replay buffer's file),
    ``unplanned`` (train episodes of those phases that were not planned), ``ledger_duplicates`` (ids judged twice
    in the outcome ledger) and ``report_mismatch`` (phases whose report counts other than the plan). All empty:
    nothing lost, nothing counted twice."""
    run = Path(run)
    stored = jsonl_ids(run / TRAJECTORIES)
    lines = Counter(stored)
    want = {i for ids in planned.values() for i in ids}
    prefixes = tuple(f"{run.name}-p{k}-" for k in planned)
    unplanned = sorted(i for i in lines if i.startswith(prefixes) and "-eval-" not in i and i not in want)
    ledger = Counter(jsonl_ids(run / OUTCOMES))
    mismatch = {}
    if report is not None:
        counts = {p["phase"]: p["train"]["episodes"] for p in report["phases"]}
        mismatch = {k: {"planned": len(ids), "reported": counts.get(k)} for k, ids in planned.items()
                    if counts.get(k) != len(ids)}
    return {"planned": len(want), "stored_lines": len(stored),
            "missing": sorted(want - set(lines)), "duplicates": sorted(i for i, n in lines.items() if n > 1),
            "unplanned": unplanned, "ledger_duplicates": sorted(i for i, n in ledger.items() if n > 1),
            "report_mismatch": mismatch}


def clean(acc: dict) -> bool:
    """Whether :func:`accounting` found nothing lost and nothing counted twice."""
    return not any(acc[k] for k in ("missing", "duplicates", "unplanned", "ledger_duplicates", "report_mismatch"))
