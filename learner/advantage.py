"""Advantages of WebRL (DESIGN.md §4). Pure functions over tensors of shape [N] (one entry per step).

Conventions: ``t`` is 0-based, a trajectory has ``T`` steps, ``steps_to_go = T - t`` (1 at the last
step); rewards are 0 except at the last step, where ``r_T`` (the outcome) is 1 or 0; ``done`` is 1 at
the last step, where the next state is terminal and its value counts as 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mc_return(outcome: Tensor, steps_to_go: Tensor, gamma: float) -> Tensor:
    """The reference code's Monte-Carlo return: ``R (1 − γ^(T−t)) / (1 − γ)`` with ``R`` the outcome."""
    return outcome * (1 - gamma ** steps_to_go) / (1 - gamma)


def eq9_advantage(reward: Tensor, value: Tensor, next_value: Tensor, outcome: Tensor, done: Tensor,
                  lam: float) -> Tensor:
    """Paper Eq. 9: ``A_t = λ (r_t + V(s_{t+1}) − V(s_t)) + (1 − λ)(r_T − V(s_t))``.

    ``next_value`` is masked to 0 where ``done`` (a terminal state has no future success to add)."""
    next_value = next_value * (1 - done)
    return lam * (reward + next_value - value) + (1 - lam) * (outcome - value)


def reference_advantage(value: Tensor, next_value: Tensor, outcome: Tensor, steps_to_go: Tensor, done: Tensor, *,
                        gamma: float, offset: float, negative: float) -> Tensor:
    """The released code's advantage, binarised:

    ``A_raw = clip(V(s') − V(s) − offset + R + mc_return, −1, 1)``, ``A = 1 if A_raw >= 0 else negative``
    (paper constants: offset 0.05, negative −0.6, γ 0.9), with ``R`` the trajectory's outcome and
    ``V(s')`` masked to 0 at the terminal step."""
    raw = (next_value * (1 - done) - value - offset + outcome + mc_return(outcome, steps_to_go, gamma)).clamp(-1, 1)
    return torch.where(raw >= 0, torch.ones_like(raw), torch.full_like(raw, negative))
