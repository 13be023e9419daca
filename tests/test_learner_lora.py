"""LoRA (peft) and bf16 autocast in the learner: adapters train while the base stays frozen, what is
published and checkpointed is the merged plain model, and bf16 steps keep fp32 weights."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from learner.checkpoint import save_checkpoint
from learner.group import policy_weights
from learner.learner import Batch, Learner
from webrl.config import LearnerConfig, LoraConfig


def _batch(vocab: int) -> Batch:
    ids = torch.randint(0, vocab, (2, 10), generator=torch.Generator().manual_seed(0))
    act = torch.zeros_like(ids)
    act[:, -3:] = 1
    return Batch(ids, torch.ones_like(ids), act)


def test_lora_trains_adapters_and_publishes_the_merged_model(tiny_model_dir, tmp_path):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    cfg = LearnerConfig(sft_lr=0.05, precision="fp32", lora=LoraConfig(enabled=True, rank=4, alpha=8, dropout=0.0))
    learner = Learner(base, cfg, micro_batch=2)
    trainable = [n for n, p in learner.policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    for _ in range(3):
        learner.sft_step(_batch(base.config.vocab_size))
    weights = policy_weights(learner.policy)
    assert set(weights) == set(original)  # plain Hugging Face names: engines load them as they are
    changed = [k for k in original if not torch.equal(original[k], weights[k])]
    assert changed and all("proj" in k for k in changed)  # adapters merged into the linear layers only
    ids = _batch(base.config.vocab_size).input_ids
    folder = save_checkpoint(tmp_path / "ckpt", learner)
    served = AutoModelForCausalLM.from_pretrained(folder / "policy", dtype=torch.float32)
    with torch.no_grad():
        assert torch.allclose(served(ids).logits, learner.policy(input_ids=ids).logits, atol=1e-4)
    assert (folder / "adapter" / "adapter_config.json").exists()


def test_bf16_autocast_steps_keep_fp32_weights(tiny_model_dir):
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    learner = Learner(policy, LearnerConfig(sft_lr=1e-3, precision="bf16"), micro_batch=2)
    before = {k: v.clone() for k, v in learner.policy.state_dict().items()}
    out = learner.sft_step(_batch(policy.config.vocab_size))
    assert torch.isfinite(torch.tensor(out["sft_loss"]))
    assert all(v.dtype == torch.float32 for v in learner.policy.state_dict().values())
    assert any(not torch.equal(before[k], v) for k, v in learner.policy.state_dict().items())


def test_a_lora_checkpoint_loads_its_adapters_back(tiny_model_dir, tmp_path):
    import pytest
    from peft import get_peft_model_state_dict

    from learner.checkpoint import load_checkpoint

    cfg = LearnerConfig(sft_lr=0.05, precision="fp32", lora=LoraConfig(enabled=True, rank=4, alpha=8, dropout=0.0))

    def lora_learner(path) -> Learner:
        return Learner(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), cfg, micro_batch=2)

    a = lora_learner(tiny_model_dir)
    vocab = a.policy.config.vocab_size
    for _ in range(3):
        a.sft_step(_batch(vocab))
    folder = save_checkpoint(tmp_path / "ckpt", a, step=3)
    b = lora_learner(tiny_model_dir)  # built on the base model the adapters were trained on
    load_checkpoint(folder, b)
    want, got = get_peft_model_state_dict(a.policy), get_peft_model_state_dict(b.policy)
    assert set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
    want, got = policy_weights(a.policy), policy_weights(b.policy)
    assert all(torch.equal(want[k], got[k]) for k in want)  # the identical merged policy
    assert b.version == 3 and b.sft_opt.state_dict()["state"][0]["step"] == 3
    a.sft_step(_batch(vocab))
    b.sft_step(_batch(vocab))  # and the next step is the same
    want, got = policy_weights(a.policy), policy_weights(b.policy)
    assert all(torch.equal(want[k], got[k]) for k in want)

    with pytest.raises(ValueError, match="build the learner on the base model"):
        load_checkpoint(folder, lora_learner(folder / "policy"))  # adapters already merged in: they would count twice
    with pytest.raises(ValueError, match="written with LoRA adapters"):
        load_checkpoint(folder, Learner(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LearnerConfig()))
