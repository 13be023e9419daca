"""Experience replay filtered by the actor's confidence (paper §3.3 and Table 2; DESIGN.md §4).

Successful trajectories are kept, one per task. Before a phase each kept step is scored under the
previous phase's policy, p = exp(mean token log-prob); steps with ``low < p <= high`` are trained on,
at most ``max_ratio`` × the current phase's step count, mixed with all current-phase steps.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class ReplayCandidate:
    step_id: str
    task_id: str
    mean_logp: float  # mean log-prob of the action tokens under π_ref


def one_success_per_task(trajectories: Iterable[tuple[str, str, float, int]]) -> dict[str, str]:
    """``(trajectory_id, task_id, reward, phase)`` -> {task_id: trajectory_id} keeping, per task, the
    successful trajectory of the latest phase (the newest behaviour that solved it)."""
    best: dict[str, tuple[int, str]] = {}
    for traj_id, task_id, reward, phase in trajectories:
        if reward > 0 and (task_id not in best or phase >= best[task_id][0]):
            best[task_id] = (phase, traj_id)
    return {task: traj for task, (_, traj) in best.items()}


def confidence(mean_logp: float) -> float:
    """p = exp(mean token log-prob): the policy's per-token confidence in the action."""
    return math.exp(mean_logp)


def select_replay(candidates: Iterable[ReplayCandidate], current_steps: int, *, low: float, high: float,
                  max_ratio: float, seed: int = 0) -> list[ReplayCandidate]:
    """The replayed steps for this phase: ``low < p <= high`` (paper: 0.5, 0.95), at most
    ``max_ratio × current_steps`` of them (paper: 2×), a seeded uniform sample when there are more."""
    kept = [c for c in candidates if low < confidence(c.mean_logp) <= high]
    cap = int(max_ratio * current_steps)
    if len(kept) > cap:
        kept = random.Random(seed).sample(kept, cap)
    return kept
