"""What the phase driver reads from the learner without training it: the critic's value of each state (per
head: advantages, the curriculum's V(s0) window) and each action's mean log-prob under the frozen
reference π_ref (the replay buffer's confidence filter). :class:`ScoringGroup` is a
:class:`~learner.group.LearnerGroup` whose ranks answer these too.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from learner.group import LearnerGroup, LearnerRank
from learner.learner import Batch, Learner, autocast_dtype
from learner.parallel import release


def _autocast(learner: Learner):
    dtype = autocast_dtype(learner.cfg.precision)
    return torch.autocast(learner.device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def _by_length(batch: Batch, size: int, score, learner: Learner) -> Tensor:
    """``score`` of each row of ``batch`` on the CPU, in the batch's order, computed over micro-batches of
    rows of similar length (little padding)."""
    ordered, order = batch.by_length()
    out = []
    for mb in ordered.micro(size):
        with _autocast(learner):
            out.append(score(mb).cpu())
    scores = torch.cat(out)
    result = torch.empty_like(scores)
    result[order.cpu()] = scores
    return result


@torch.no_grad()
def head_values(learner: Learner, batch: Batch) -> Tensor:
    """P(success) of every critic head for each prompt, [n, heads] on the CPU (V is the min over heads)."""
    out = _by_length(batch.to(learner.device), learner.micro_batch, lambda mb: learner.critic_module(
        mb.input_ids, mb.attention_mask).float().softmax(-1)[..., 1], learner)
    release(learner.critic_module)
    return out


@torch.no_grad()
def reference_logprobs(learner: Learner, batch: Batch) -> Tensor:
    """Mean log-prob of each sample's action tokens under π_ref, [n] on the CPU."""
    out = _by_length(batch.to(learner.device), learner.micro_batch, lambda mb: learner.reference_logp(
        mb.input_ids, mb.attention_mask, mb.action_mask).float(), learner)
    release(learner.reference_logp)
    return out


class ScoringRank(LearnerRank):
    def head_values(self, batch: Batch) -> Tensor:
        return head_values(self.learner, batch.shard(self.rank, self.world))

    def reference_logprobs(self, batch: Batch) -> Tensor:
        return reference_logprobs(self.learner, batch.shard(self.rank, self.world))


def _padded(batch: Batch, world: int) -> Batch:
    """``batch`` with its last row repeated until it splits evenly over ``world`` ranks."""
    extra = -len(batch) % world
    if not extra:
        return batch
    index = torch.cat([torch.arange(len(batch)), torch.full((extra,), len(batch) - 1)])
    return Batch(**{k: (None if v is None else v[index]) for k, v in vars(batch).items()})


class ScoringGroup(LearnerGroup):
    """A :class:`LearnerGroup` of :class:`ScoringRank` s: every rank scores its shard (under fsdp2 all of
    them must take part), the answers are joined in order."""

    rank_class = ScoringRank

    def _scored(self, method: str, batch: Batch) -> Tensor:
        if len(batch) == 0:
            return torch.empty(0)
        return torch.cat(self._all(method, _padded(batch, len(self.ranks))))[:len(batch)]

    def head_values(self, batch: Batch) -> Tensor:
        """[n, heads] P(success) per critic head of each prompt in ``batch``."""
        return self._scored("head_values", batch)

    def reference_logprobs(self, batch: Batch) -> Tensor:
        """[n] mean action log-prob under π_ref of each sample in ``batch``."""
        return self._scored("reference_logprobs", batch)
