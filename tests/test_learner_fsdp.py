"""FSDP2 in the learner group (learner.strategy=fsdp2) on CPUs with gloo: 2 sharded ranks take the step
1 rank takes, each rank really holds half of each weight, whole weights gather to rank 0 for publishing
and checkpoints, a sharded checkpoint resumes (sharded or in one process), bf16 runs through
MixedPrecisionPolicy, and LoRA with FSDP2 is refused."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from test_learner_group import TINY, _batch, _cfg
from transformers import AutoModelForCausalLM

from learner.checkpoint import load_checkpoint
from learner.group import LearnerGroup, build_policy
from learner.learner import Learner
from learner.parallel import full_state_dict
from webrl.config import LearnerConfig, LoraConfig


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The in-process baselines on one thread: the two ranks already take a core each, and a tiny model
    gains nothing from more (oversubscribed OpenMP threads slow it down many times)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=3, include_dashboard=False, namespace="test-learner-fsdp")
    yield ray
    ray.shutdown()


def _train(learner) -> dict:
    """Actor, critic, a new phase (the sharded reference copies the policy), actor again, sft; on a
    LearnerGroup or on one in-process Learner (the 1-rank baseline, as a rank builds it)."""
    out = {"actor": learner.actor_step(_batch())["actor_loss"], "critic": learner.critic_step(_batch())["critic_loss"]}
    learner.new_phase()
    out["actor2"] = learner.actor_step(_batch(seed=4))["actor_loss"]
    out["sft"] = learner.sft_step(_batch(seed=5))["sft_loss"]
    return out


def _one_rank(cfg: LearnerConfig) -> Learner:
    return Learner(build_policy(TINY, seed=0), cfg, micro_batch=2)


def test_lora_with_fsdp2_is_refused_with_a_reason():
    with pytest.raises(ValidationError, match="does not combine with learner.strategy=fsdp2"):
        LearnerConfig(strategy="fsdp2", lora=LoraConfig(enabled=True))


def test_two_fsdp2_ranks_match_one_rank(ray_session):
    one = _one_rank(_cfg())
    losses1, policy1, critic1 = _train(one), one.full_policy_state(), full_state_dict(one.critic)
    two = LearnerGroup(2, TINY, _cfg(strategy="fsdp2"), micro_batch=2)  # 4 samples a rank: 2 micro-batches
    losses2, policy2, critic2 = _train(two), two.policy_state(), two.critic_state()
    shard0, shard1 = two.local_policy_state(0), two.local_policy_state(1)
    two.shutdown()
    for key in losses1:
        assert losses2[key] == pytest.approx(losses1[key], rel=1e-5), key
    assert set(policy2) == set(policy1) and set(critic2) == set(critic1)
    for k in policy1:
        assert torch.allclose(policy1[k], policy2[k], atol=1e-6), k
    for k in critic1:
        assert torch.allclose(critic1[k], critic2[k], atol=1e-6), k
    name = "model.layers.0.mlp.up_proj.weight"  # [64, 32]: each rank holds 32 rows of it
    assert shard0[name].shape[0] == shard1[name].shape[0] == math.ceil(policy1[name].shape[0] / 2)
    assert torch.equal(torch.cat([shard0[name], shard1[name]]), policy2[name])


def test_a_sharded_checkpoint_resumes_and_serves(ray_session, tmp_path):
    cfg = _cfg(strategy="fsdp2", optimizer="adamw", lr=1e-3)
    group = LearnerGroup(2, TINY, cfg, micro_batch=2)
    _train(group)
    folder = group.save(str(tmp_path / "ckpt"), phase=1, step=4)
    version, ref, _ = group.publish()
    published = ray_session.get(ref)
    served = AutoModelForCausalLM.from_pretrained(f"{folder}/policy", dtype=torch.float32).state_dict()
    assert version == 3 and set(published) == set(served)  # actor, actor, sft: three versions
    assert all(torch.equal(published[k], served[k]) for k in served)

    def next_steps(learner) -> tuple[dict, dict]:
        learner.actor_step(_batch(seed=6))
        learner.critic_step(_batch(seed=6))
        learner.sft_step(_batch(seed=7))
        if isinstance(learner, LearnerGroup):
            return learner.policy_state(), learner.critic_state()
        return learner.full_policy_state(), full_state_dict(learner.critic)

    expected = next_steps(group)
    assert group.load(folder)["step"] == 4  # back to the checkpoint, on the same sharded ranks
    got = next_steps(group)
    group.shutdown()
    for want, have in zip(expected, got):
        for k in want:
            assert torch.allclose(want[k], have[k], atol=1e-6), k

    # the same checkpoint resumes in one plain process: optimizer state is kept whole, by name
    plain = _one_rank(cfg)
    load_checkpoint(folder, plain)
    assert plain.version == 3 and plain.sft_opt.state_dict()["state"][0]["step"] == 1
    got = next_steps(plain)
    for want, have in zip(expected, got):
        for k in want:
            assert torch.allclose(want[k], have[k], atol=1e-5), k


def test_bf16_runs_through_fsdp2_mixed_precision(ray_session):
    one = _one_rank(_cfg(precision="bf16"))
    loss1, policy1 = one.actor_step(_batch())["actor_loss"], one.full_policy_state()
    two = LearnerGroup(2, TINY, _cfg(strategy="fsdp2", precision="bf16"), micro_batch=2)
    loss2, policy2 = two.actor_step(_batch())["actor_loss"], two.policy_state()
    two.shutdown()
    assert loss2 == pytest.approx(loss1, rel=2e-2)  # bf16 compute: close, not equal
    assert all(v.dtype == torch.float32 for v in policy2.values())  # fp32 sharded weights, bf16 only in compute
    assert max((policy1[k] - policy2[k]).abs().max().item() for k in policy1) < 1e-3


@pytest.mark.gpu
def test_two_fsdp2_gpu_ranks_match_one_gpu(ray_session):
    """The same on GPUs with NCCL: one GPU per rank; fp32 compared tightly, bf16 (auto on GPUs) closely."""
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    for precision, rel in (("fp32", 1e-5), ("auto", 2e-2)):
        one = Learner(build_policy(TINY, seed=0).to("cuda"), _cfg(precision=precision), micro_batch=2)
        losses1, policy1 = _train(one), one.full_policy_state()
        two = LearnerGroup(2, TINY, _cfg(strategy="fsdp2", precision=precision), micro_batch=2, num_gpus_per_rank=1)
        losses2, policy2 = _train(two), two.policy_state()
        two.shutdown()
        for key in losses1:
            assert losses2[key] == pytest.approx(losses1[key], rel=rel), (precision, key)
        for k in policy1:
            assert torch.allclose(policy1[k], policy2[k], atol=1e-5 if precision == "fp32" else 1e-3), (precision, k)
