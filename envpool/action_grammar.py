"""The action grammar as a regular expression, for constrained decoding.

The regex accepts exactly the canonical text :func:`envpool.actions.format_action` writes: one call,
no comment lines, keyword arguments in the order ``action, argument, element``, double quotes, and in
quoted text only the escapes ``format_action`` writes (``\\"``, ``\\\\``, ``\\n``, ``\\r``). Every
string it accepts parses with :func:`envpool.actions.parse_action` to a valid action; every action
``format_action`` writes matches it, as long as its argument and element fit the bounds below
(``tests/test_action_grammar.py`` checks both).

Bounds, so that a constrained decoder always finishes an action within its token budget: every token
but the special ones (which the grammar never allows) spans at least one UTF-8 byte, so an output of
``b`` bytes takes at most ``b`` tokens. Each action form gets the longest argument that keeps its whole
text within ``max_tokens - 1`` bytes (one token is left for the end-of-sequence token), counting
:data:`MAX_BYTES_PER_CHAR` bytes per argument character (a character outside ASCII, or an escape,
takes up to 4). Element ids are bounded by the page's element count when it is given.
"""

from __future__ import annotations

import re
from functools import lru_cache

from envpool.actions import CANONICAL, QUOTE_ESCAPES, SIGNATURE
from webrl.types import ActionKind

MAX_BYTES_PER_CHAR = 4  # UTF-8: a character takes 1 to 4 bytes, an escape 2
MAX_ELEMENT_DIGITS = 5  # element ids below 100000 when the page's element count is not given
# a character of quoted text: anything but what format_action escapes, or one of its escapes
_STRING_CHAR = "[^" + "".join(QUOTE_ESCAPES.values()) + "]"
_STRING_ESCAPE = r"\\[" + "".join(re.escape(e[1]) for e in QUOTE_ESCAPES.values()) + "]"


_REGEX_SPECIAL = set("()[]{}?*+|^$.\\")


def regex_literal(text: str) -> str:
    """``text`` as a regex that matches it, escaping only the metacharacters (xgrammar reads no others)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


class GrammarError(ValueError):
    """The token budget is too small for the action grammar; the message says what it needs."""


def integer_range_regex(upper: int) -> str:
    """A regex for the decimal integers ``0 .. upper`` (no leading zeros, no sign)."""
    if upper < 0:
        raise ValueError(f"upper must be >= 0, not {upper}")
    digits = str(upper)
    if len(digits) == 1:
        return f"[0-{digits}]"
    parts = ["[0-9]"] + [f"[1-9][0-9]{{{n - 1}}}" for n in range(2, len(digits))]  # all shorter numbers
    for i, d in enumerate(digits):  # as long as `upper`: the same prefix, a smaller digit, then any digits
        low = 1 if i == 0 else 0
        if int(d) > low:
            rest = len(digits) - i - 1
            span = str(low) if int(d) - 1 == low else f"[{low}-{int(d) - 1}]"
            parts.append(digits[:i] + span + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


def _takes_argument(kind: ActionKind) -> bool:
    return kind is ActionKind.exit or "argument" in SIGNATURE[kind]


def _form(kind: ActionKind, argument: str, element: str, literal=lambda s: s) -> str:
    """The canonical text of ``kind`` around ``argument`` and ``element``; ``literal`` escapes the fixed
    parts (:func:`regex_literal` to make a regex)."""
    if kind is ActionKind.exit:
        return literal('exit(message="') + argument + literal('")')
    parts = [literal(f'action="{CANONICAL[kind]}"')]
    if "argument" in SIGNATURE[kind]:
        parts.append(literal('argument="') + argument + literal('"'))
    if "element" in SIGNATURE[kind]:
        parts.append(literal('element="') + element + literal('"'))
    return literal("do(") + literal(", ").join(parts) + literal(")")


def _kinds(element_count: int | None) -> list[ActionKind]:
    """The action kinds on offer: all, but none that needs an element on a page without any."""
    return [k for k in [*CANONICAL, ActionKind.exit] if element_count != 0 or "element" not in SIGNATURE.get(k, ())]


def _element_digits(element_count: int | None) -> int:
    return MAX_ELEMENT_DIGITS if element_count is None else len(str(max(element_count - 1, 0)))


def _fixed_bytes(kind: ActionKind, element_count: int | None) -> int:
    """UTF-8 bytes of ``kind``'s text with an empty argument and the longest element id."""
    return len(_form(kind, "", "0" * _element_digits(element_count)).encode())


def argument_limits(max_tokens: int, element_count: int | None = None) -> dict[ActionKind, int]:
    """The longest argument (in characters) of each action kind that takes one, such that its whole
    text plus the end-of-sequence token fits in ``max_tokens`` tokens."""
    return {k: (max_tokens - 1 - _fixed_bytes(k, element_count)) // MAX_BYTES_PER_CHAR
            for k in _kinds(element_count) if _takes_argument(k)}


def min_max_tokens(element_count: int | None = None, min_argument_chars: int = 1) -> int:
    """The smallest token budget under which every action form fits with ``min_argument_chars``."""
    return 1 + max(_fixed_bytes(k, element_count) + (min_argument_chars * MAX_BYTES_PER_CHAR if _takes_argument(k) else 0)
                   for k in _kinds(element_count))


@lru_cache(maxsize=1024)
def action_regex(max_tokens: int, element_count: int | None = None) -> str:
    """The action grammar as a regex (the same text in Python ``re`` and xgrammar syntax) for outputs of
    at most ``max_tokens`` tokens, the end-of-sequence token included, with element ids below
    ``element_count`` (None: any id of up to :data:`MAX_ELEMENT_DIGITS` digits; 0: no element actions)."""
    if element_count is not None and element_count < 0:
        raise ValueError(f"element_count must be >= 0, not {element_count}")
    need = min_max_tokens(element_count)
    if max_tokens < need:
        raise GrammarError(f"a constrained action needs up to {need} tokens, but the budget is {max_tokens}: "
                           f"set rollout.max_new_tokens >= {need} (or rollout.constrained=false)")
    if element_count is None:
        element = f"(?:0|[1-9][0-9]{{0,{MAX_ELEMENT_DIGITS - 1}}})"
    else:
        element = integer_range_regex(max(element_count - 1, 0))
    limits = argument_limits(max_tokens, element_count)
    forms = [_form(k, f"(?:{_STRING_CHAR}|{_STRING_ESCAPE}){{0,{limits[k]}}}" if k in limits else "", element,
                   regex_literal) for k in _kinds(element_count)]
    return "(?:" + "|".join(forms) + ")"
