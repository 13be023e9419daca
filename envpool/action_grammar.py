"""The action grammar for constrained decoding: a regex, and the budget rule that ends every action
within its token budget.

The regex accepts exactly the canonical text :func:`envpool.actions.format_action` writes: one call,
no comment lines, keyword arguments in the order ``action, argument, element``, double quotes, in
quoted text only the escapes ``format_action`` writes (``\\"``, ``\\\\``, ``\\n``, ``\\r``), element ids
without leading zeros and below the page's element count when it is given. So every string it
accepts parses with :func:`envpool.actions.parse_action` to a valid action, and every action
``format_action`` writes (ids in range) matches it (``tests/test_action_grammar.py`` checks both).

Free text (the ``argument=`` of Type, Search and Select, the ``message=`` of exit) has no length in
the regex: a bounded repetition there makes xgrammar check every token of the vocabulary at run
time (~35 ms a token against ~0.01 ms unbounded, measured on SmolLM2's tokenizer). Its length is
bounded in tokens instead, by the decoder (``actors/constraint.py``), with :class:`ActionGrammar`'s
numbers: every token but the special ones (which the grammar never allows) spans at least one byte,
so the rest of an action takes at most as many tokens as it has bytes. Inside free text, with ``r``
tokens left counting the next one, a token that does not close the text is allowed only if the way
out still fits after it: ``close`` bytes (the closing quote and the rest of the action, longest
element id), one more byte if the token ends halfway through an escape, and the end-of-sequence
token (``r - 1 >= close + 1 + pending``). A token that closes it is always allowed. Outside free
text the action is fixed or bounded (ids), and :func:`min_max_tokens` is the smallest budget that
holds the longest action with empty free text, its end-of-sequence token and one byte of slack (for
a token that opens free text and ends in an escape). A single-byte closing quote, or a single byte
that ends an escape, is always in a byte-level vocabulary, so the rule never leaves no token.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from envpool.actions import CANONICAL, QUOTE_ESCAPES, SIGNATURE
from webrl.types import ActionKind

MAX_ELEMENT_DIGITS = 5  # element ids below 100000 when the page's element count is not given
FREE_TEXT_KEYS = ("argument", "message")  # the keyword arguments whose values are free text
# one character of quoted text: anything but what format_action escapes, or one of its escapes
_STRING_CHAR = "[^" + "".join(QUOTE_ESCAPES.values()) + "]"
_STRING_ESCAPE = r"\\[" + "".join("\\" + e[1] if e[1] in "\\]^-" else e[1] for e in QUOTE_ESCAPES.values()) + "]"
FREE_TEXT = f"(?:{_STRING_CHAR}|{_STRING_ESCAPE})*"
_REGEX_SPECIAL = set("()[]{}?*+|^$.\\")


class GrammarError(ValueError):
    """The token budget is too small for the action grammar; the message says what it needs."""


@dataclass(frozen=True)
class ActionGrammar:
    """What a constrained decoder needs: the regex, and for the budget rule each free-text opener
    (``argument="``) with the most bytes from its closing quote to the end of the action."""

    regex: str
    free_text: tuple[tuple[str, int], ...]


def regex_literal(text: str) -> str:
    """``text`` as a regex that matches it, escaping only the metacharacters (xgrammar reads no others)."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text)


def integer_range_regex(upper: int) -> str:
    """A regex for the decimal integers ``0 .. upper`` (no leading zeros, no sign)."""
    if upper < 0:
        raise ValueError(f"upper must be >= 0, not {upper}")
    digits = str(upper)
    if len(digits) == 1:
        return f"[0-{digits}]"
    parts = ["[0-9]"] + ["[1-9]" + "[0-9]" * (n - 1) for n in range(2, len(digits))]  # all shorter numbers
    for i, d in enumerate(digits):  # as long as `upper`: the same prefix, a smaller digit, then any digits
        low = 1 if i == 0 else 0
        if int(d) > low:
            span = str(low) if int(d) - 1 == low else f"[{low}-{int(d) - 1}]"
            parts.append(digits[:i] + span + "[0-9]" * (len(digits) - i - 1))
    parts.append(digits)
    return "(?:" + "|".join(parts) + ")"


def _form(kind: ActionKind, text: str, element: str, literal=lambda s: s) -> str:
    """The canonical text of ``kind`` around free ``text`` and ``element``; ``literal`` escapes the fixed
    parts (:func:`regex_literal` to make a regex)."""
    if kind is ActionKind.exit:
        return literal('exit(message="') + text + literal('")')
    parts = [literal(f'action="{CANONICAL[kind]}"')]
    if "argument" in SIGNATURE[kind]:
        parts.append(literal('argument="') + text + literal('"'))
    if "element" in SIGNATURE[kind]:
        parts.append(literal('element="') + element + literal('"'))
    return literal("do(") + literal(", ").join(parts) + literal(")")


def _kinds(element_count: int | None) -> list[ActionKind]:
    """The action kinds on offer: all, but none that needs an element on a page without any."""
    return [k for k in [*CANONICAL, ActionKind.exit] if element_count != 0 or "element" not in SIGNATURE.get(k, ())]


def _longest_id(element_count: int | None) -> str:
    return "9" * MAX_ELEMENT_DIGITS if element_count is None else str(max(element_count - 1, 0))


def _close_bytes(element_count: int | None) -> tuple[tuple[str, int], ...]:
    """Each free-text opener and the most bytes after the text it opens (closing quote included)."""
    out = {}
    for kind in _kinds(element_count):
        text = _form(kind, "\0", _longest_id(element_count))
        if "\0" in text:
            head, tail = text.split("\0")
            opener = next(f'{key}="' for key in FREE_TEXT_KEYS if head.endswith(f'{key}="'))
            out[opener] = max(out.get(opener, 0), len(tail.encode()))
    return tuple(sorted(out.items()))


def min_max_tokens(element_count: int | None = None) -> int:
    """The smallest token budget for constrained actions: the longest action with empty free text, its
    end-of-sequence token, and one byte of slack (see the module docstring)."""
    return max(len(_form(k, "", _longest_id(element_count)).encode()) for k in _kinds(element_count)) + 2


def action_regex(element_count: int | None = None) -> str:
    """The action grammar as a regex (the same text in Python ``re`` and xgrammar syntax), element ids
    below ``element_count`` (None: any id of up to :data:`MAX_ELEMENT_DIGITS` digits; 0: no element actions)."""
    if element_count is not None and element_count < 0:
        raise ValueError(f"element_count must be >= 0, not {element_count}")
    if element_count is None:
        element = integer_range_regex(10 ** MAX_ELEMENT_DIGITS - 1)
    else:
        element = integer_range_regex(max(element_count - 1, 0))
    forms = [_form(k, FREE_TEXT, element, regex_literal) for k in _kinds(element_count)]
    return "(?:" + "|".join(forms) + ")"


@lru_cache(maxsize=4096)
def action_grammar(max_tokens: int, element_count: int | None = None) -> ActionGrammar:
    """The grammar for actions of at most ``max_tokens`` tokens (end-of-sequence token included) on a
    page with ``element_count`` elements; refuses a budget below :func:`min_max_tokens`."""
    need = min_max_tokens(element_count)
    if max_tokens < need:
        raise GrammarError(f"a constrained action needs a budget of {need} tokens, but it is {max_tokens}: "
                           f"set rollout.max_new_tokens >= {need} (or rollout.constrained=false)")
    return ActionGrammar(action_regex(element_count), _close_bytes(element_count))
