"""The random-action floor of the ladder (issue: base → SFT → WebRL): each step one element of the page,
uniformly at random, gets the obvious action for its kind - a text field is typed a word of the instruction,
a drop-down gets one of its options, anything else is clicked. A policy with no understanding at all: every
rung above it must beat it. Seeded, so a floor is reproducible."""

from __future__ import annotations

import random
import re

from envpool.actions import format_action
from webrl.types import Action, ActionKind

_ELEMENT = re.compile(r'<(\w+) id="(\d+)"([^>]*)>')
_OPTION = re.compile(r"<option[^>]*>([^<]*)</option>")
_TEXT_INPUTS = {"text", "password", "email", "search", "number", "tel", "url", ""}
_WORD = re.compile(r'"([^"]+)"|(\w+)')


def _elements(html: str) -> list[tuple[str, int, str, int]]:
    """(tag, id, attributes, position of the tag's end) of every element that carries an id."""
    return [(m.group(1).lower(), int(m.group(2)), m.group(3), m.end()) for m in _ELEMENT.finditer(html)]


def random_action(instruction: str, html: str, rng: random.Random) -> str:
    """One uniformly random element of ``html``, acted on as its kind suggests (a scroll when there is none)."""
    elements = _elements(html)
    if not elements:
        return format_action(Action(kind=ActionKind.scroll_down))
    tag, element, attrs, end = rng.choice(elements)
    kind = (re.search(r'type="([^"]*)"', attrs) or [None, ""])[1].lower()
    if tag == "textarea" or (tag == "input" and kind in _TEXT_INPUTS):
        words = [a or b for a, b in _WORD.findall(instruction)] or ["a"]
        return format_action(Action(kind=ActionKind.type, element=element, argument=rng.choice(words)))
    if tag == "select":
        options = _OPTION.findall(html[end:html.find("</select>", end)]) or [""]
        return format_action(Action(kind=ActionKind.select, element=element, argument=rng.choice(options).strip()))
    return format_action(Action(kind=ActionKind.click, element=element))
