"""WebRL losses (DESIGN.md §4): critic, and the KL-constrained actor update in two modes.

``logp`` and ``ref_logp`` are per-sample **mean** log-probs of the action tokens under π and π_ref.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def critic_value(head_logits: Tensor) -> Tensor:
    """V(s) = min over heads of softmax(logits)[1]; ``head_logits`` is [N, heads, 2]."""
    return head_logits.softmax(-1)[..., 1].min(-1).values


def critic_loss(head_logits: Tensor, outcome: Tensor) -> Tensor:
    """Cross-entropy of every head against the trajectory outcome (0/1), averaged over heads and
    samples. The caller passes the logits of both s_t and s_{t+1} for each step."""
    n, heads, _ = head_logits.shape
    target = outcome.long().repeat_interleave(heads)
    return F.cross_entropy(head_logits.reshape(n * heads, 2), target)


def paper_actor_terms(logp: Tensor, ref_logp: Tensor, advantage: Tensor, beta: float) -> Tensor:
    """Per-sample terms of paper Eq. 6, ``(β · log π(a|s)/π_ref(a|s) − A)²``. Minimised where
    β·log-ratio = A: a positive advantage raises log π until the ratio reaches A/β, a negative one lowers it."""
    return (beta * (logp - ref_logp) - advantage) ** 2


def paper_actor_loss(logp: Tensor, ref_logp: Tensor, advantage: Tensor, beta: float) -> Tensor:
    """Paper Eq. 6: the mean of :func:`paper_actor_terms`."""
    return paper_actor_terms(logp, ref_logp, advantage, beta).mean()


def reference_beta(advantage: Tensor, ref_logp: Tensor, log_ratio: Tensor, *, confident_beta: float,
                   confident_p: float) -> Tensor:
    """The reference code's per-sample β (no gradient): ``confident_beta`` where A ≥ 0 and
    p_ref = exp(mean log π_ref) ≥ ``confident_p``, else 1; then capped at |A / x| so that β·x never
    overshoots A (the KL brake)."""
    with torch.no_grad():
        beta = torch.where((advantage >= 0) & (ref_logp.exp() >= confident_p),
                           torch.full_like(advantage, confident_beta), torch.ones_like(advantage))
        cap = (advantage / log_ratio).abs().nan_to_num(nan=float("inf"), posinf=float("inf"))
        return torch.minimum(beta, cap)


def reference_actor_terms(logp: Tensor, ref_logp: Tensor, advantage: Tensor, *, confident_beta: float,
                          confident_p: float) -> tuple[Tensor, Tensor]:
    """Per-sample terms ``(1/β) · SmoothL1(β·x, A)`` (x = log π − log π_ref) and the mask of the samples
    that count (A > 0): the released code trains on positive advantages only."""
    x = logp - ref_logp
    beta = reference_beta(advantage, ref_logp, x, confident_beta=confident_beta, confident_p=confident_p)
    terms = F.smooth_l1_loss(beta * x, advantage, reduction="none") / beta
    return terms, advantage > 0


def reference_actor_loss(logp: Tensor, ref_logp: Tensor, advantage: Tensor, *, confident_beta: float,
                         confident_p: float) -> Tensor:
    """The released code's actor loss: the mean of :func:`reference_actor_terms` over samples with
    A > 0. Zero (with a graph) when no sample has a positive advantage."""
    terms, keep = reference_actor_terms(logp, ref_logp, advantage, confident_beta=confident_beta, confident_p=confident_p)
    if not keep.any():
        return (logp * 0).sum()
    return terms[keep].mean()
