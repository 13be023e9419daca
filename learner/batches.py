"""From trajectories to learner batches (DESIGN.md §4): one sample per step, its prompt exactly as the engine
saw it (``Step.prompt_token_ids``) followed by the sampled action tokens; the WebRL advantages of each step
from the critic's values of it and of the next step of its trajectory.

Pure functions over plain data and tensors; the phase driver (``webrl/train.py``) calls them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

from learner.advantage import eq9_advantage, reference_advantage
from learner.learner import Batch
from webrl.config import LearnerConfig
from webrl.types import Trajectory


@dataclass(frozen=True)
class StepSample:
    """One step of one trajectory, as the learner sees it."""

    trajectory_id: str
    task_id: str
    index: int  # 0-based step index t
    steps: int  # the trajectory's length T
    prompt: tuple[int, ...]  # s_t: the prompt's token ids
    action: tuple[int, ...]  # a_t: the sampled tokens (end-of-turn included when the model stopped)
    outcome: float  # r_T of the trajectory, 0 or 1

    @property
    def key(self) -> tuple[str, int]:
        return self.trajectory_id, self.index

    @property
    def trainable(self) -> bool:
        """An actor sample needs action tokens (an engine failure can leave none)."""
        return bool(self.action)

    @property
    def done(self) -> bool:
        return self.index == self.steps - 1


def step_samples(trajs: Iterable[Trajectory], max_tokens: int) -> list[StepSample]:
    """Every step of ``trajs`` whose prompt and action fit ``max_tokens`` (learner.context_tokens), with
    its trajectory's outcome (reward > 0 counts as success)."""
    out = []
    for t in trajs:
        outcome = 1.0 if t.success else 0.0
        for i, s in enumerate(t.steps):
            if len(s.prompt_token_ids) + len(s.action_token_ids) <= max_tokens:
                out.append(StepSample(t.id, t.task_id, i, len(t.steps), tuple(s.prompt_token_ids),
                                      tuple(s.action_token_ids), outcome))
    return out


def pad_batch(samples: Sequence[StepSample], pad_id: int, *, actions: bool = True) -> Batch:
    """Right-padded ``Batch``: prompt + action tokens with the action marked (``actions``), or the prompt
    alone (what the critic reads); ``outcome`` per sample."""
    seqs = [list(s.prompt) + (list(s.action) if actions else []) for s in samples]
    width = max(len(q) for q in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    action_mask = torch.zeros_like(input_ids)
    for row, (s, q) in enumerate(zip(samples, seqs)):
        input_ids[row, :len(q)] = torch.tensor(q)
        attention[row, :len(q)] = 1
        if actions:
            action_mask[row, len(s.prompt):len(q)] = 1
    outcome = torch.tensor([s.outcome for s in samples], dtype=torch.float32)
    return Batch(input_ids, attention, action_mask if actions else None, outcome=outcome)


def next_values(samples: Sequence[StepSample], values: dict[tuple[str, int], float]) -> tuple[Tensor, Tensor]:
    """(V(s_{t+1}), done) per sample: the value of the next step of the same trajectory from ``values``
    (keyed by (trajectory id, step index)); 0 and done=1 at the last step. A next step that has no value
    (its prompt did not fit the context) counts as terminal."""
    nxt, done = [], []
    for s in samples:
        key = (s.trajectory_id, s.index + 1)
        terminal = s.done or key not in values
        nxt.append(0.0 if terminal else values[key])
        done.append(1.0 if terminal else 0.0)
    return torch.tensor(nxt), torch.tensor(done)


def step_advantages(samples: Sequence[StepSample], values: dict[tuple[str, int], float], cfg: LearnerConfig) -> Tensor:
    """The advantage of each sample under ``learner.actor_loss``: paper Eq. 9 (λ = advantage_lambda, the
    reward r_t is the outcome at the last step, else 0) or the reference code's binarised one."""
    value = torch.tensor([values[s.key] for s in samples])
    next_value, done = next_values(samples, values)
    outcome = torch.tensor([s.outcome for s in samples])
    if cfg.actor_loss == "paper":
        reward = outcome * torch.tensor([1.0 if s.done else 0.0 for s in samples])
        return eq9_advantage(reward, value, next_value, outcome, done, cfg.advantage_lambda)
    steps_to_go = torch.tensor([float(s.steps - s.index) for s in samples])
    return reference_advantage(value, next_value, outcome, steps_to_go, done, gamma=cfg.gamma,
                               offset=cfg.reference_value_offset, negative=cfg.reference_negative_advantage)


def minibatches(samples: Sequence[StepSample], batch_size: int, *, seed: int, multiple: int = 1) -> list[list[StepSample]]:
    """``samples`` shuffled (seeded) into chunks of ``batch_size``; each chunk cut to a multiple of
    ``multiple`` (the learner ranks: a batch must split evenly over them), empty ones dropped."""
    order = list(samples)
    random.Random(seed).shuffle(order)
    chunks = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    chunks = [c[:len(c) - len(c) % multiple] for c in chunks]
    return [c for c in chunks if c]


def counted_rows(chunk: Sequence[StepSample], advantage: dict[tuple[str, int], float], actor_loss: str,
                 multiple: int = 1) -> list[StepSample]:
    """The samples of an actor batch that its loss reads: every one under paper Eq. 6; under the reference
    code's loss only those with A > 0 (the others are masked out of it, so their forward and backward passes
    would be waste), topped up with uncounted ones to a multiple of ``multiple`` (the ranks), at least one
    multiple: the update is the same as on the whole chunk."""
    if actor_loss == "paper":
        return list(chunk)
    counted = [s for s in chunk if advantage[s.key] > 0]
    rest = [s for s in chunk if advantage[s.key] <= 0]
    return counted + rest[:max(-len(counted) % multiple, multiple if not counted else 0)]
