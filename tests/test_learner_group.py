"""Learner updates on a tiny config-built Llama: accumulation, bad input, and 2 gloo ranks == 1 rank."""

from __future__ import annotations

import os

import pytest
import torch

from learner.group import LearnerGroup, build_policy
from learner.learner import Batch, Learner, NonFiniteLoss
from webrl.config import LearnerConfig

TINY = dict(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)


def _batch(n: int = 8, length: int = 16, seed: int = 3) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, TINY["vocab_size"], (n, length), generator=g)
    attn = torch.ones_like(ids)
    act = torch.zeros_like(ids)
    act[:, length - 4:] = 1
    adv = torch.tensor([1.0, -0.6] * (n // 2))
    return Batch(ids, attn, act, advantage=adv, outcome=(adv > 0).float())


def _cfg(**kw) -> LearnerConfig:
    # a step large enough to move the weights measurably; SGD for exact comparisons (Adam's first step
    # is ~lr·sign(g), which turns float noise in near-zero gradients into differences of a whole lr)
    return LearnerConfig(**{"lr": 1e-2, "optimizer": "sgd", "precision": "fp32", **kw})


@pytest.mark.parametrize("mode", ["reference", "paper"])
def test_accumulation_takes_the_same_step_as_one_big_batch(mode):
    states = []
    for micro in (8, 2):
        learner = Learner(build_policy(TINY, seed=0), _cfg(actor_loss=mode), micro_batch=micro)
        out = learner.actor_step(_batch())
        states.append({k: v.clone() for k, v in learner.policy.state_dict().items()})
        assert out["version"] == 1 and out["samples"] == (4 if mode == "reference" else 8)
    for k in states[0]:
        assert torch.allclose(states[0][k], states[1][k], atol=1e-6), k


def _ragged(n: int = 8, seed: int = 5) -> Batch:
    """Right-padded rows of different lengths (6 to 6 + 2n tokens, shuffled), then 7 columns of padding in every row."""
    g = torch.Generator().manual_seed(seed)
    lengths = (6 + 2 * torch.randperm(n, generator=g)).tolist()
    width = max(lengths) + 7
    ids = torch.zeros((n, width), dtype=torch.long)
    attn, act = torch.zeros_like(ids), torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(1, TINY["vocab_size"], (length,), generator=g)
        attn[row, :length] = 1
        act[row, length - 3:length] = 1
    adv = torch.tensor([1.0, -0.6] * (n // 2))
    return Batch(ids, attn, act, advantage=adv, outcome=(adv > 0).float())


def test_micro_batches_drop_padding_columns_and_rows_sort_by_length():
    batch = _ragged()
    ordered, order = batch.by_length()
    lengths = ordered.attention_mask.sum(1)
    assert lengths.tolist() == sorted(batch.attention_mask.sum(1).tolist())
    assert torch.equal(ordered.input_ids, batch.input_ids[order]) and torch.equal(ordered.advantage, batch.advantage[order])
    for i, mb in enumerate(ordered.micro(3)):
        assert mb.input_ids.shape[1] == int(lengths[i * 3:i * 3 + 3].max())  # its own longest row, not the batch's
        assert mb.action_mask.sum() == ordered.action_mask[i * 3:i * 3 + 3].sum()  # no action token lost


def test_steps_and_scores_do_not_depend_on_padding_or_row_order():
    """The learner sorts rows by length and trims padding per micro-batch: the same steps as one whole
    micro-batch padded to the longest row, and scores come back in the batch's order."""
    from learner.scoring import head_values, reference_logprobs

    states, scores = [], []
    for micro in (8, 3):
        learner = Learner(build_policy(TINY, seed=0), _cfg(), micro_batch=micro)
        scores.append((head_values(learner, _ragged()), reference_logprobs(learner, _ragged())))
        actor, critic = learner.actor_step(_ragged()), learner.critic_step(_ragged())
        states.append(({**learner.policy.state_dict(), **{f"c.{k}": v for k, v in learner.critic.state_dict().items()}},
                       actor["actor_loss"], critic["critic_loss"]))
    for k in states[0][0]:
        assert torch.allclose(states[0][0][k], states[1][0][k], atol=1e-6), k
    assert states[0][1:] == pytest.approx(states[1][1:], rel=1e-5)
    for whole, micro in zip(*scores):
        assert torch.allclose(whole, micro, atol=1e-5)
    one = Learner(build_policy(TINY, seed=0), _cfg(), micro_batch=1)  # row by row: no padding at all
    assert torch.allclose(head_values(one, _ragged()), scores[0][0], atol=1e-5)


def test_gradient_checkpointing_takes_the_same_steps():
    """learner.gradient_checkpointing recomputes activations in the backward pass: same actor and critic steps."""
    states = []
    for checkpointing in (False, True):
        learner = Learner(build_policy(TINY, seed=0), _cfg(gradient_checkpointing=checkpointing), micro_batch=4)
        assert learner.policy.is_gradient_checkpointing is checkpointing
        assert learner.critic.trunk.is_gradient_checkpointing is checkpointing
        learner.actor_step(_batch())
        learner.critic_step(_batch())
        states.append({**learner.policy.state_dict(), **{f"critic.{k}": v for k, v in learner.critic.state_dict().items()}})
    for k in states[0]:
        assert torch.allclose(states[0][k], states[1][k], atol=1e-6), k


def test_a_bf16_checkpoint_trains_as_fp32_master_weights(tmp_path):
    """transformers keeps a checkpoint's saved dtype; the learner's copy must be fp32 or small updates vanish."""
    build_policy(TINY, seed=0).to(torch.bfloat16).save_pretrained(tmp_path)
    policy = build_policy(str(tmp_path))
    assert {p.dtype for p in policy.parameters()} == {torch.float32}


def test_actor_step_raises_log_prob_of_positive_advantage_actions():
    from learner.logprobs import action_logprobs

    learner = Learner(build_policy(TINY, seed=0), _cfg(optimizer="adamw", lr=1e-3), micro_batch=8)
    batch = _batch()
    before = action_logprobs(learner.policy, batch.input_ids, batch.attention_mask, batch.action_mask).detach()
    for _ in range(3):
        learner.actor_step(batch)
    after = action_logprobs(learner.policy, batch.input_ids, batch.attention_mask, batch.action_mask).detach()
    assert (after[batch.advantage > 0] > before[batch.advantage > 0]).all()


def test_critic_step_moves_values_toward_outcomes():
    learner = Learner(build_policy(TINY, seed=0), _cfg(), micro_batch=4)
    batch = _batch()
    v0 = learner.critic.value(batch.input_ids, batch.attention_mask).detach()
    for _ in range(5):
        out = learner.critic_step(batch)
    v1 = learner.critic.value(batch.input_ids, batch.attention_mask).detach()
    win, lose = batch.outcome == 1, batch.outcome == 0
    assert (v1[win] - v0[win]).mean() > 0 > (v1[lose] - v0[lose]).mean()
    assert out["critic_loss"] > 0


def test_bad_input_is_refused_with_a_reason():
    learner = Learner(build_policy(TINY, seed=0), _cfg(), micro_batch=4)
    empty = _batch()._select(slice(0, 0))
    with pytest.raises(ValueError, match="empty batch"):
        learner.actor_step(empty)
    nothing = _batch()
    nothing.advantage = torch.full((8,), -0.6)
    assert "skipped" in learner.actor_step(nothing) and learner.version == 0
    broken = _batch()
    broken.advantage = torch.full((8,), float("nan"))
    broken.advantage[0] = 1.0
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    learner.cfg = learner.cfg.model_copy(update={"actor_loss": "paper"})
    with pytest.raises(NonFiniteLoss, match="update was skipped"):
        learner.actor_step(broken)
    assert all(torch.equal(before[k], v) for k, v in learner.policy.state_dict().items())
    with pytest.raises(ValueError, match="does not split over 3 ranks"):
        _batch().shard(0, 3)


def test_two_gloo_ranks_match_one_rank():
    """LearnerGroup on Ray: 2 ranks (gloo, DDP) and 1 rank take the same actor and critic steps."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=3, include_dashboard=False, namespace="test-learner")
    try:
        results = {}
        for n in (1, 2):
            group = LearnerGroup(n, TINY, _cfg(), micro_batch=2, num_cpus_per_rank=1)
            # torch in each rank uses the machine's cores shared among the ranks, not Ray's 1 for a 1-CPU actor
            threads = ray.get([r.__ray_call__.remote(lambda rank: torch.get_num_threads()) for r in group.ranks])
            assert threads == [max(1, (os.cpu_count() or 1) // n)] * n
            a = group.actor_step(_batch())
            c = group.critic_step(_batch())
            results[n] = (a, c, group.policy_state(), group.critic_state())
            if n == 2:  # the ranks agree with each other too
                mine, other = group.local_policy_state(0), group.local_policy_state(1)
                assert all(torch.allclose(mine[k], other[k], atol=1e-6) for k in other)
            group.shutdown()
        (a1, c1, p1, k1), (a2, c2, p2, k2) = results[1], results[2]
        assert a1["actor_loss"] == pytest.approx(a2["actor_loss"], rel=1e-4)
        assert c1["critic_loss"] == pytest.approx(c2["critic_loss"], rel=1e-4)
        for k in p1:
            assert torch.allclose(p1[k], p2[k], atol=1e-5), k
        for k in k1:
            assert torch.allclose(k1[k], k2[k], atol=1e-5), k
    finally:
        ray.shutdown()
