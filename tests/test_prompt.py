"""The WebRL rounds prompt through SmolLM2's real chat template, and its length budget."""

from __future__ import annotations

import pytest

from actors.prompt import PAGE_PLACEHOLDER, Round, build_prompt
from webrl.types import Observation


def _obs(i: int, size: int = 1) -> Observation:
    return Observation(url="http://x/", html=f'<button id="{i}">page {i}</button>' * size)


def test_rounds_format_shows_only_the_current_page(tokenizer):
    history = [Round(_obs(0), 'do(action="Click", element="0")'),
               Round(_obs(1).model_copy(update={"error": "element 9 is not on the page"}), 'do(action="Click", element="9")')]
    current = _obs(2).model_copy(update={"notes": ["blocked navigation to http://evil/"]})
    p = build_prompt(tokenizer, "Click the button", history, current, max_tokens=4096)
    assert p.dropped_rounds == 0 and not p.page_truncated
    assert p.text.count(PAGE_PLACEHOLDER) == 2 and "page 2" in p.text and "page 0" not in p.text
    assert p.text.index("Task Instruction: Click the button") < p.text.index("Round 0") < p.text.index("Round 2")
    assert "Error from the last action: element 9 is not on the page" in p.text
    assert "Note: blocked navigation to http://evil/" in p.text
    assert p.text.count("<|im_start|>assistant") == 3 and p.text.rstrip().endswith("<|im_start|>assistant")
    assert p.token_count == len(tokenizer(p.text, add_special_tokens=False).input_ids)


def test_budget_drops_oldest_rounds_then_cuts_the_page(tokenizer):
    history = [Round(_obs(i), "x " * 200) for i in range(5)]
    full = build_prompt(tokenizer, "Do it", history, _obs(9), max_tokens=100_000)
    fit = build_prompt(tokenizer, "Do it", history, _obs(9), max_tokens=full.token_count - 150)
    assert fit.dropped_rounds >= 1 and fit.token_count <= full.token_count - 150
    assert "Task Instruction: Do it" in fit.text and "earlier rounds are left out" in fit.text
    big = _obs(9, size=400)
    cut = build_prompt(tokenizer, "Do it", history, big, max_tokens=1000)
    assert cut.page_truncated and cut.dropped_rounds == 5 and 900 < cut.token_count <= 1000
    with pytest.raises(ValueError, match="too small"):
        build_prompt(tokenizer, "Do it", history, big, max_tokens=50)
