"""The WebRL "rounds" prompt (DESIGN.md §4), one builder for rollout, training, critic and replay scoring.

A system message states the task format and the action grammar. Then one user/assistant pair per past
round: the user turn carries the round's page as a placeholder (only the current round shows real
HTML) plus any error or note the environment reported, the assistant turn the agent's raw output. The
last user turn carries the current page. Everything goes through the model's own chat template.

Length budget: the oldest rounds are dropped first (the instruction always stays), then the current
page is cut, and the result says what it dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from webrl.types import Observation

PAGE_PLACEHOLDER = "** Simplified html **"

SYSTEM_PROMPT = """You are a web agent. Each round you see a web page as simplified HTML, where every element \
you can act on has an integer id, and you answer with exactly one action, optionally preceded by a \
"# Element: ..." or "# Note: ..." comment line. Actions:
do(action="Click", element="<id>")
do(action="Type", argument="<text>", element="<id>")
do(action="Search", argument="<text>", element="<id>")
do(action="Hover", element="<id>")
do(action="Scroll Up")
do(action="Scroll Down")
do(action="Press Enter")
do(action="Select Dropdown Option", argument="<option text>", element="<id>")
do(action="Go Backward")
do(action="Go Forward")
exit(message="<answer, or a short note that the task is done>")"""


@dataclass(frozen=True)
class Round:
    observation: Observation
    output: str  # the agent's raw text for this round


@dataclass
class Prompt:
    text: str
    token_ids: list[int]
    dropped_rounds: int = 0  # oldest rounds left out to fit the budget
    page_truncated: bool = False  # the current page was cut to fit

    @property
    def token_count(self) -> int:
        return len(self.token_ids)


def _turn(index: int, obs: Observation, html: str, intro: list[str]) -> str:
    parts = [*intro, f"Round {index}"]
    if obs.error:
        parts.append(f"Error from the last action: {obs.error}")
    parts.extend(f"Note: {n}" for n in obs.notes)
    parts.append(html)
    return "\n\n".join(parts)


def build_messages(instruction: str, history: list[Round], current: Observation, *, skip: int = 0,
                   current_html: str | None = None) -> list[dict]:
    """Chat messages for the next action; ``skip`` leaves out the oldest rounds, ``current_html``
    replaces the current page (cut to fit)."""
    intro = [f"Task Instruction: {instruction}"] + ([f"({skip} earlier rounds are left out.)"] if skip else [])
    rounds = [(i, r.observation, PAGE_PLACEHOLDER, r.output) for i, r in enumerate(history) if i >= skip]
    rounds.append((len(history), current, current.html if current_html is None else current_html, None))
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for k, (i, obs, html, output) in enumerate(rounds):
        messages.append({"role": "user", "content": _turn(i, obs, html, intro if k == 0 else [])})
        if output is not None:
            messages.append({"role": "assistant", "content": output})
    return messages


def build_prompt(tokenizer, instruction: str, history: list[Round], current: Observation, max_tokens: int) -> Prompt:
    """The prompt text (chat template applied, generation prompt added) within ``max_tokens``."""
    return fit_prompt(tokenizer, lambda skip, html: build_messages(instruction, history, current, skip=skip, current_html=html),
                      len(history), current.html, max_tokens,
                      "the prompt is {n} tokens even without any page or history; the budget of {budget} tokens is too small "
                      "(raise learner.context_tokens)")


def fit_prompt(tokenizer, messages: Callable[[int, str | None], list[dict]], items: int, page_html: str,
               max_tokens: int, too_small: str) -> Prompt:
    """Render ``messages(skip, page_html)`` through the chat template (generation prompt added) within
    ``max_tokens``: leave out the oldest of ``items`` earlier entries first (``skip``), then keep the
    longest start of the page that fits (``page_html`` None: the whole page). ``too_small`` says what to
    raise when even that does not fit, with ``{n}`` (the tokens it took) and ``{budget}`` filled in."""

    def render(skip: int, html: str | None = None) -> tuple[str, list[int]]:
        text = tokenizer.apply_chat_template(messages(skip, html), tokenize=False, add_generation_prompt=True)
        return text, tokenizer(text, add_special_tokens=False).input_ids

    for skip in range(items + 1):
        text, ids = render(skip)
        if len(ids) <= max_tokens:
            return Prompt(text, ids, dropped_rounds=skip)
    skip, lo, hi = items, 0, len(page_html)
    while lo < hi:  # the longest start of the page that fits
        mid = (lo + hi + 1) // 2
        if len(render(skip, page_html[:mid] + " …")[1]) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    text, ids = render(skip, page_html[:lo] + " …")
    if len(ids) > max_tokens:
        raise ValueError(too_small.format(n=len(ids), budget=max_tokens))
    return Prompt(text, ids, dropped_rounds=skip, page_truncated=True)
