"""Action log-probs and the critic on a tiny config-built Llama (SmolLM2's architecture, random weights)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from learner.critic import Critic
from learner.logprobs import action_logprobs, token_logprobs

VOCAB = 49152  # SmolLM2's vocabulary


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True)
    return LlamaForCausalLM(cfg).eval()


def _batch():
    torch.manual_seed(1)
    ids = torch.randint(0, VOCAB, (3, 12))
    attn = torch.ones_like(ids)
    attn[2, 9:] = 0  # right padding
    act = torch.zeros_like(ids)
    act[0, 8:12] = 1
    act[1, 5:7] = 1
    act[2, 6:9] = 1
    return ids, attn, act


def test_action_logprobs_match_the_naive_full_log_softmax(model):
    ids, attn, act = _batch()
    with torch.no_grad():
        ours = action_logprobs(model, ids, attn, act)
        full = model(input_ids=ids, attention_mask=attn).logits.float().log_softmax(-1)  # the naive way
        tok = full[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
        mask = act[:, 1:].float()
        naive = (tok * mask).sum(-1) / mask.sum(-1)
    assert torch.allclose(ours, naive, atol=1e-5)


def test_vocabulary_projection_sees_only_action_positions(model):
    ids, attn, act = _batch()
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    try:
        with torch.no_grad():
            logp, rows = token_logprobs(model, ids, attn, act)
    finally:
        handle.remove()
    n_action = int(act[:, 1:].sum())
    assert seen == [(n_action, 64)] and logp.shape == (n_action,) and (logp <= 0).all()


def test_a_sample_without_action_tokens_is_an_error(model):
    ids, attn, act = _batch()
    act[1] = 0
    with pytest.raises(ValueError, match=r"samples \[1\] have no action tokens"):
        action_logprobs(model, ids, attn, act)


def test_gradients_reach_the_policy_through_action_tokens_only(model):
    ids, attn, act = _batch()
    model.zero_grad()
    action_logprobs(model, ids, attn, act).sum().backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0
    model.zero_grad()


def test_critic_reads_the_last_real_token_and_takes_the_min_head(model):
    torch.manual_seed(2)
    critic = Critic.from_causal_lm(model).eval()
    assert critic.trunk is not model.get_decoder()  # its own weights
    ids, attn, _ = _batch()
    with torch.no_grad():
        logits = critic(ids, attn)
        value = critic.value(ids, attn)
        changed = ids.clone()
        changed[2, 9:] = 7  # tokens after the last real one (padding) change nothing
        assert torch.allclose(critic.value(changed, attn), value)
        changed[2, 8] = 7  # the last real token does
        assert not torch.allclose(critic.value(changed, attn)[2], value[2])
    assert logits.shape == (3, 2, 2)
    assert torch.allclose(value, logits.softmax(-1)[..., 1].min(-1).values)
    assert ((value > 0) & (value < 1)).all()
