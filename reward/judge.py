"""Fuzzy-match judges: does an answer mean the same as a reference?

WebArena grades ``fuzzy_match`` references (and the reasons given for unachievable tasks) with
GPT-4. Here the judge is pluggable: any object or function with the signature of
:class:`FuzzyJudge`, ``async (intent, answer, reference) -> bool``. For an unachievable task
(``fuzzy_match: "N/A"``) whose answer is not plain ``N/A``, the reference handed to the judge is the
task's ``string_note``: the reason the task cannot be done, which the answer should state.

The default, :class:`TokenOverlapJudge`, is deterministic and needs no model: it normalises both
strings and passes the answer when it contains the reference, or when it holds every number of the
reference and at least ``threshold`` of its words. It is strict about numbers and lenient about
word order; it cannot see paraphrases.

To plug in an LLM judge, write an async function and name it in the config
(``env.webarena.fuzzy_judge: "mypackage.judges:gpt_judge"``, read by :func:`load_judge`), or pass
it as ``judge=`` to :func:`reward.rules.evaluate`::

    async def gpt_judge(intent: str, answer: str, reference: str) -> bool:
        reply = await my_chat_client(fuzzy_prompt(intent, answer, reference))  # any chat endpoint
        return fuzzy_verdict(reply)

:func:`fuzzy_prompt` writes the grading request (WebArena's rubric, in our words) and
:func:`fuzzy_verdict` reads the reply (``correct`` passes; ``incorrect`` and ``partially correct``
fail).
"""

from __future__ import annotations

import importlib
import re
from typing import Protocol, runtime_checkable

from reward.text_match import normalize

# share of the reference's words the answer must hold (numbers must all be there)
DEFAULT_OVERLAP = 0.8

_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*|[^\W\d_]+")


@runtime_checkable
class FuzzyJudge(Protocol):
    async def __call__(self, intent: str, answer: str, reference: str) -> bool:
        """True when ``answer`` means what ``reference`` says, as an answer to ``intent``."""


def tokens(text: str) -> list[str]:
    """Lower-cased words and numbers (``"3h 20min"`` -> ``3 h 20 min``; ``"1,234.5"`` stays whole)."""
    return _TOKEN.findall(normalize(text))


def _is_number(token: str) -> bool:
    return token[0].isdigit()


class TokenOverlapJudge:
    """The deterministic default judge (see the module docstring)."""

    def __init__(self, threshold: float = DEFAULT_OVERLAP):
        if not 0 < threshold <= 1:
            raise ValueError(f"the overlap threshold must lie in (0, 1], got {threshold}")
        self.threshold = threshold

    def score(self, answer: str, reference: str) -> float:
        """Share of the reference's words found in the answer; 0 if one of its numbers is missing,
        1 if the answer contains the whole reference; 0 for an empty reference."""
        if not normalize(reference):
            return 0.0
        if normalize(reference) in normalize(answer):
            return 1.0
        want, got = set(tokens(reference)), set(tokens(answer))
        if not want:
            return 0.0
        if any(_is_number(t) and t not in got for t in want):
            return 0.0
        return len(want & got) / len(want)

    async def __call__(self, intent: str, answer: str, reference: str) -> bool:
        return self.score(answer, reference) >= self.threshold

    def __repr__(self) -> str:
        return f"TokenOverlapJudge(threshold={self.threshold})"


def load_judge(spec: str | None) -> FuzzyJudge:
    """The judge named by ``"module:attribute"`` (a class is instantiated without arguments), or the
    default :class:`TokenOverlapJudge` for ``None``/empty."""
    if not spec:
        return TokenOverlapJudge()
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"fuzzy judge '{spec}' must look like 'package.module:callable'")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load fuzzy judge '{spec}': {e}") from None
    if isinstance(obj, type):
        obj = obj()
    if not callable(obj):
        raise ValueError(f"fuzzy judge '{spec}' is not callable; it must be async (intent, answer, reference) -> bool")
    return obj


def fuzzy_prompt(intent: str, answer: str, reference: str) -> list[dict[str, str]]:
    """Chat messages asking a model to grade ``answer`` against ``reference`` (WebArena's rubric)."""
    request = (
        "Grade a student's answer to a question against the reference answer. The student may word it "
        "differently; judge whether the two mean the same.\n"
        f"question: {intent}\n"
        f"reference answer: {reference}\n"
        "The string 'N/A' anywhere stands for 'the task cannot be achieved'; if the reference gives a "
        "reason, the student's answer must state the same reason.\n"
        f"student answer: {answer}\n"
        "End your reply with one verdict: correct, incorrect, or partially correct."
    )
    return [{"role": "system", "content": "You are a careful grader."}, {"role": "user", "content": request}]


def fuzzy_verdict(reply: str) -> bool:
    """Read a grader's reply: ``correct`` passes; ``incorrect`` or ``partially correct`` fails."""
    text = reply.lower()
    if "incorrect" in text or "partially correct" in text:
        return False
    if "correct" in text:
        return True
    raise ValueError(f"the judge's reply holds no verdict (correct / incorrect / partially correct): {reply[:200]!r}")
