"""What a scripted policy sees, and the few moves it makes, shared by every policy module.

A policy reads only what the agent reads: the instruction, the current observation's simplified HTML
(:mod:`envpool.observation`) and the actions it already took this episode (the WebRL prompt shows
the agent its own past outputs too). Never the page's hidden state or the task's JavaScript.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass, field
from functools import cached_property

from envpool.actions import format_action, parse_action
from envpool.observation import Element, elements
from webrl.types import Action, ActionKind


class PolicyStuck(LookupError):
    """The page does not hold what the policy needs to act (an unexpected layout or state)."""


@dataclass(frozen=True)
class View:
    """One step's input: the instruction, the page as the agent sees it, and the episode's past actions."""

    instruction: str
    html: str
    history: tuple[str, ...] = field(default=())

    @cached_property
    def elements(self) -> list[Element]:
        return elements(self.html)

    @cached_property
    def text(self) -> str:
        """The page's visible text, tags dropped and entities decoded, whitespace collapsed."""
        return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", self.html))).strip()

    @cached_property
    def past(self) -> list[Action]:
        """The actions taken so far this episode, parsed."""
        return [parse_action(a) for a in self.history]

    def tagged(self, *tags: str) -> list[Element]:
        """Elements whose tag is one of ``tags``, in id order."""
        return [e for e in self.elements if e.tag in tags]

    def by_text(self, text: str, *tags: str) -> Element:
        """The first element whose own text is ``text`` (whitespace and case as given), optionally of ``tags``."""
        found = self.find_text(text, *tags)
        if found is None:
            raise PolicyStuck(f"no element with text {text!r}" + (f" among <{'>, <'.join(tags)}>" if tags else ""))
        return found

    def find_text(self, text: str, *tags: str) -> Element | None:
        """Like :meth:`by_text`, None when absent."""
        want = norm(text)
        return next((e for e in self.elements if norm(e.text) == want and (not tags or e.tag in tags)), None)

    def button(self, text: str) -> Element:
        """The ``<button>`` (or ``<input type=button|submit>``) labelled ``text``, case-insensitive."""
        want = norm(text).lower()
        for e in self.elements:
            label = e.text if e.tag == "button" else e.attrs.get("value", "")
            if (e.tag == "button" or e.attrs.get("type") in ("button", "submit")) and norm(label).lower() == want:
                return e
        raise PolicyStuck(f"no button labelled {text!r}")

    def text_inputs(self) -> list[Element]:
        """Inputs a person types into (text-like ``<input>`` and ``<textarea>``), in id order."""
        typed = ("text", "password", "email", "search", "number", "tel", "url", "input", "")
        return [e for e in self.elements
                if (e.tag == "input" and e.attrs.get("type", "") in typed) or e.tag == "textarea"]

    def clicked(self, element: int) -> bool:
        """Whether this episode already clicked element ``element``."""
        return any(a.kind is ActionKind.click and a.element == element for a in self.past)

    def typed(self) -> list[str]:
        """The texts typed so far this episode, in order."""
        return [a.argument or "" for a in self.past if a.kind in (ActionKind.type, ActionKind.search)]


def norm(text: str) -> str:
    """Whitespace collapsed and trimmed."""
    return re.sub(r"\s+", " ", text).strip()


def quoted(instruction: str) -> list[str]:
    """The double-quoted pieces of an instruction, trimmed (the pages pad them with spaces)."""
    return [q.strip() for q in re.findall(r'"([^"]*)"', instruction)]


def ordinal(text: str) -> int:
    """``3rd`` -> 3, ``1st`` -> 1 (the first ordinal in ``text``)."""
    m = re.search(r"(\d+)(?:st|nd|rd|th)\b", text)
    if not m:
        raise PolicyStuck(f"no ordinal like '3rd' in {text!r}")
    return int(m.group(1))


def bbox(el: Element) -> tuple[int, int, int, int]:
    """(left, top, width, height) of an interactive element, from its ``data-bbox``."""
    return tuple(int(v) for v in el.attrs.get("data-bbox", "0,0,0,0").split(","))  # type: ignore[return-value]


def click(el: Element | int) -> str:
    return format_action(Action(kind=ActionKind.click, element=el if isinstance(el, int) else el.id))


def hover(el: Element | int) -> str:
    return format_action(Action(kind=ActionKind.hover, element=el if isinstance(el, int) else el.id))


def type_into(el: Element | int, text: str) -> str:
    return format_action(Action(kind=ActionKind.type, element=el if isinstance(el, int) else el.id, argument=text))


def select(el: Element | int, option: str) -> str:
    return format_action(Action(kind=ActionKind.select, element=el if isinstance(el, int) else el.id, argument=option))


def press_enter() -> str:
    return format_action(Action(kind=ActionKind.press_enter))


def fill_then(fields: list[tuple[Element, str]], submit: Element) -> str:
    """Type each text into its input until every input holds it, then click ``submit``."""
    for el, text in fields:
        if el.attrs.get("value", "") != text:
            return type_into(el, text)
    return click(submit)
