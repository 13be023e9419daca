"""Checkpoints: a saved learner resumes to exactly the step it would have taken uninterrupted
(AdamW moments and counters restored, reference and critic included), and its policy/ folder loads in
both inference engines as it is."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from learner.checkpoint import load_checkpoint, read_manifest, save_checkpoint
from learner.learner import Batch, Learner
from webrl.config import LearnerConfig


def _batch(vocab: int, seed: int, n: int = 4, length: int = 12) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, length), generator=g)
    act = torch.zeros_like(ids)
    act[:, -3:] = 1
    adv = torch.tensor([1.0, -0.6] * (n // 2))
    return Batch(ids, torch.ones_like(ids), act, advantage=adv, outcome=(adv > 0).float())


def _learner(model_dir) -> Learner:
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return Learner(policy, LearnerConfig(lr=1e-3, actor_loss="paper", precision="fp32"), micro_batch=2)


def _states(learner: Learner) -> dict:
    return {**{f"p.{k}": v.clone() for k, v in learner.policy.state_dict().items()},
            **{f"c.{k}": v.clone() for k, v in learner.critic.state_dict().items()}}


def test_resume_takes_the_same_next_step(tiny_model_dir, tokenizer, tmp_path):
    vocab = len(tokenizer)
    a = _learner(tiny_model_dir)
    for seed in (1, 2):
        a.actor_step(_batch(vocab, seed))
        a.critic_step(_batch(vocab, seed))
    a.new_phase()  # the reference now differs from the initial weights: it must be saved too
    a.actor_step(_batch(vocab, 3))
    folder = save_checkpoint(tmp_path / "phase-1", a, tokenizer=tokenizer, phase=1, step=3)
    a.actor_step(_batch(vocab, 4))
    a.critic_step(_batch(vocab, 4))
    expected = _states(a)

    b = _learner(folder / "policy")
    manifest = load_checkpoint(folder, b)
    assert manifest["phase"] == 1 and manifest["step"] == 3 and b.version == 3
    b.actor_step(_batch(vocab, 4))
    b.critic_step(_batch(vocab, 4))
    got = _states(b)
    for k in expected:
        assert torch.allclose(expected[k], got[k], atol=1e-6), k
    assert b.actor_opt.state_dict()["state"][0]["step"] == a.actor_opt.state_dict()["state"][0]["step"]


def test_a_checkpoint_is_whole_or_absent_and_says_what_it_holds(tiny_model_dir, tokenizer, tmp_path):
    a = _learner(tiny_model_dir)
    folder = save_checkpoint(tmp_path / "ckpt", a, tokenizer=tokenizer)
    assert not (tmp_path / "ckpt.partial").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["files"]) == {"policy", "reference", "critic", "optimizer"}
    assert (folder / "policy" / "tokenizer_config.json").exists()
    with pytest.raises(FileNotFoundError, match="not a webrl checkpoint"):
        read_manifest(tmp_path)
    other = Learner(AutoModelForCausalLM.from_pretrained(tiny_model_dir), LearnerConfig())
    other.critic.heads.append(torch.nn.Linear(2, 2))  # a critic of another shape
    with pytest.raises(ValueError, match="does not fit this model"):
        load_checkpoint(folder, other)


@pytest.mark.parametrize("kind", ["transformers", "vllm"])
def test_the_policy_folder_serves_as_it_is(kind, tiny_model_dir, tokenizer, tmp_path):
    from actors.engine import Sampling, make_engine
    from webrl.config import load_config

    a = _learner(tiny_model_dir)
    a.actor_step(_batch(len(tokenizer), 1))
    folder = save_checkpoint(tmp_path / "ckpt", a, tokenizer=tokenizer)
    engine = make_engine(load_config("tiny", ["rollout.dtype=float32"]), folder / "policy", engine=kind)
    try:
        prompt = tokenizer("Click the OK button", add_special_tokens=False).input_ids
        gen = engine.submit(prompt, Sampling(temperature=0.0, max_tokens=4)).result(timeout=120)
    finally:
        engine.close()
    with torch.no_grad():  # the engine runs the trained weights: its first greedy token is the learner's argmax
        logits = a.policy(torch.tensor([prompt])).logits[0, -1]
    assert gen.token_ids[0] == int(logits.argmax())
