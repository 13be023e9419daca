"""WebRL's math against values computed by hand, gradient signs, and the KL brake."""

from __future__ import annotations

import math

import pytest
import torch

from learner.advantage import eq9_advantage, mc_return, reference_advantage
from learner.losses import critic_loss, critic_value, paper_actor_loss, reference_actor_loss, reference_beta
from learner.replay_filter import ReplayCandidate, one_success_per_task, select_replay
from webrl.config import WebRLConfig

T = torch.tensor
CFG = WebRLConfig()
REF = dict(confident_beta=CFG.learner.reference_confident_beta, confident_p=CFG.learner.reference_confident_p)


def test_paper_constants_are_the_config_defaults():
    L, R = CFG.learner, CFG.replay
    assert (L.advantage_lambda, L.gamma, L.reference_value_offset, L.reference_negative_advantage) == (0.5, 0.9, 0.05, -0.6)
    assert (L.reference_confident_beta, L.reference_confident_p, L.lr, L.batch_size, L.phases) == (5.0, 0.8, 1e-6, 128, 8)
    assert (L.grad_clip, L.sft_lr, R.confidence_low, R.confidence_high, R.max_ratio) == (1.0, 1e-5, 0.5, 0.95, 2.0)


def test_mc_return_by_hand():
    # R (1 - 0.9^k) / 0.1: k=3 -> 2.71, k=1 -> 1, a failure -> 0
    out = mc_return(T([1.0, 1.0, 0.0]), T([3.0, 1.0, 3.0]), 0.9)
    assert torch.allclose(out, T([2.71, 1.0, 0.0]))


def test_eq9_advantage_by_hand():
    reward, value, next_value = T([0.0, 1.0, 0.0]), T([0.4, 0.7, 0.3]), T([0.6, 0.9, 0.2])
    outcome, done = T([1.0, 1.0, 0.0]), T([0.0, 1.0, 0.0])
    # 0.5(0+0.6-0.4)+0.5(1-0.4)=0.4 ; terminal: 0.5(1+0-0.7)+0.5(1-0.7)=0.3 ; 0.5(0.2-0.3)+0.5(0-0.3)=-0.2
    assert torch.allclose(eq9_advantage(reward, value, next_value, outcome, done, lam=0.5), T([0.4, 0.3, -0.2]))
    # lambda = 1 is the one-step TD error, lambda = 0 the Monte-Carlo advantage
    assert torch.allclose(eq9_advantage(reward, value, next_value, outcome, done, lam=1.0), T([0.2, 0.3, -0.1]))
    assert torch.allclose(eq9_advantage(reward, value, next_value, outcome, done, lam=0.0), T([0.6, 0.3, -0.3]))


def test_reference_advantage_by_hand():
    L = CFG.learner
    kw = dict(gamma=L.gamma, offset=L.reference_value_offset, negative=L.reference_negative_advantage)
    # success: 0.6-0.4-0.05+1+2.71 -> clipped to 1 -> A=1; failure: 0.3-0.5-0.05 = -0.25 -> A=-0.6;
    # failure with rising value: 0.7-0.5-0.05 = 0.15 -> A=1
    a = reference_advantage(T([0.4, 0.5, 0.5]), T([0.6, 0.3, 0.7]), T([1.0, 0.0, 0.0]), T([3.0, 2.0, 2.0]),
                            T([0.0, 0.0, 0.0]), **kw)
    assert torch.equal(a, T([1.0, -0.6, 1.0]))
    # at the terminal step V(s') counts 0: 0 - 0.9 - 0.05 + 0 + 0 < 0
    assert reference_advantage(T([0.9]), T([0.99]), T([0.0]), T([1.0]), T([1.0]), **kw).item() == pytest.approx(-0.6)


def test_critic_value_and_loss_by_hand():
    logits = T([[[0.0, 0.0], [0.0, math.log(3)]]])  # head 1: p=0.5, head 2: p=0.75
    assert critic_value(logits).item() == pytest.approx(0.5)  # min over heads
    # mean of -ln 0.5 and -ln 0.75
    assert critic_loss(logits, T([1.0])).item() == pytest.approx((math.log(2) + math.log(4 / 3)) / 2)
    assert critic_loss(logits, T([0.0])).item() == pytest.approx((math.log(2) + math.log(4)) / 2)


def _grad(loss_fn, logp):
    logp = logp.clone().requires_grad_(True)
    loss_fn(logp).backward()
    return logp.grad


def test_paper_actor_loss_value_and_gradient_signs():
    assert paper_actor_loss(T([-1.0]), T([-1.5]), T([0.4]), beta=1.0).item() == pytest.approx(0.01)
    ref = T([-1.0, -1.0])
    grad = _grad(lambda lp: paper_actor_loss(lp, ref, T([0.5, -0.5]), beta=1.0), ref)
    assert grad[0] < 0 < grad[1]  # descent raises log pi where A > 0 and lowers it where A < 0


def test_reference_actor_loss_value_and_gradient_sign():
    lp = T([math.log(0.9)])  # pi = pi_ref, p_ref = 0.9 >= 0.8 and A >= 0: beta = 5
    assert reference_beta(T([1.0]), lp, T([0.0]), **REF).item() == 5.0
    # SmoothL1(5*0, 1) / 5 = (1 - 0.5) / 5
    assert reference_actor_loss(lp, lp, T([1.0]), **REF).item() == pytest.approx(0.1)
    assert _grad(lambda x: reference_actor_loss(x, lp, T([1.0]), **REF), lp).item() < 0  # raises log pi
    # unconfident reference: beta = 1 -> SmoothL1(0, 1) = 0.5
    low = T([math.log(0.3)])
    assert reference_actor_loss(low, low, T([1.0]), **REF).item() == pytest.approx(0.5)


def test_reference_kl_brake_stops_the_update_once_beta_x_reaches_a():
    ref = T([math.log(0.9)])
    logp = ref + 0.5  # x = 0.5: beta 5 would overshoot A = 1, so beta = min(5, |1/0.5|) = 2 and beta*x = A
    assert reference_beta(T([1.0]), ref, T([0.5]), **REF).item() == pytest.approx(2.0)
    assert reference_actor_loss(logp, ref, T([1.0]), **REF).item() == pytest.approx(0.0, abs=1e-7)
    assert _grad(lambda x: reference_actor_loss(x, ref, T([1.0]), **REF), logp).abs().item() < 1e-6
    # short of the target the update still pushes
    assert _grad(lambda x: reference_actor_loss(x, ref, T([1.0]), **REF), ref + 0.1).item() < 0


def test_reference_loss_trains_only_on_positive_advantages():
    lp, ref = T([-0.5, -0.7]), T([-0.6, -0.6])
    both = reference_actor_loss(lp, ref, T([1.0, -0.6]), **REF)
    only = reference_actor_loss(lp[:1], ref[:1], T([1.0]), **REF)
    assert both.item() == pytest.approx(only.item())
    none = reference_actor_loss(lp.clone().requires_grad_(True), ref, T([-0.6, -0.6]), **REF)
    assert none.item() == 0.0 and none.requires_grad


def test_replay_filter_window_cap_and_one_success_per_task():
    ps = {"a": 0.4, "b": 0.5, "c": 0.6, "d": 0.95, "e": 0.96}  # keep 0.5 < p <= 0.95
    cands = [ReplayCandidate(k, "t", math.log(p)) for k, p in ps.items()]
    kw = dict(low=CFG.replay.confidence_low, high=CFG.replay.confidence_high, max_ratio=CFG.replay.max_ratio)
    assert sorted(c.step_id for c in select_replay(cands, current_steps=10, **kw)) == ["c", "d"]
    many = [ReplayCandidate(str(i), "t", math.log(0.7)) for i in range(10)]
    picked = select_replay(many, current_steps=2, **kw)  # at most 2 x 2
    assert len(picked) == 4 and len({c.step_id for c in picked}) == 4
    assert picked == select_replay(many, current_steps=2, **kw)  # seeded: reproducible
    trajs = [("x1", "t1", 1.0, 0), ("x2", "t1", 1.0, 2), ("x3", "t1", 0.0, 3), ("y1", "t2", 0.0, 1), ("z1", "t3", 1.0, 1)]
    assert one_success_per_task(trajs) == {"t1": "x2", "t3": "z1"}
