"""Scripted policies for MiniWoB++ tasks, written in our action grammar.

Each reads the instruction and the current observation and returns the next action text, so a
policy works from whatever state the page is in. They prove the environment end to end (tests,
``webrl env demo``) and are demonstrations for a supervised warm start.
"""

from __future__ import annotations

import re
from typing import Callable

from envpool.actions import format_action
from envpool.observation import elements
from webrl.types import Action, ActionKind

Policy = Callable[[str, str], str]


def _click(element: int) -> str:
    return format_action(Action(kind=ActionKind.click, element=element))


def _type(element: int, text: str) -> str:
    return format_action(Action(kind=ActionKind.type, element=element, argument=text))


def _quoted(instruction: str) -> list[str]:
    return re.findall(r'"([^"]*)"', instruction)


def _by_text(html: str, text: str, tags: tuple[str, ...] | None = None) -> int:
    for el in elements(html):
        if el.text.strip() == text.strip() and (tags is None or el.tag in tags):
            return el.id
    raise LookupError(f"no element with text {text!r}")


def _labelled_inputs(html: str) -> dict[str, tuple[int, bool]]:
    """``<label><input id=N ...> TEXT</label>`` -> {TEXT: (N, checked)}."""
    found = {}
    for m in re.finditer(r'<label><input id="(\d+)"([^>]*)></input>\s*([^<]*)</label>', html):
        found[m.group(3).strip()] = (int(m.group(1)), 'checked="true"' in m.group(2))
    return found


def _form(html: str, wanted: list[str], submit_text: str) -> str:
    """Type ``wanted[i]`` into the i-th text input until each holds it, then press the submit button."""
    inputs = [el for el in elements(html) if el.tag == "input"]
    for el, text in zip(inputs, wanted):
        if el.attrs.get("value", "") != text:
            return _type(el.id, text)
    return _click(_by_text(html, submit_text, ("button",)))


def _choose(html: str, targets: list[str]) -> str:
    for label, (element, checked) in _labelled_inputs(html).items():
        if (label in targets) != checked:
            return _click(element)
    return _click(_by_text(html, "Submit", ("button",)))


def _select_targets(instruction: str) -> list[str]:
    m = re.match(r"Select (.*) and click Submit", instruction)
    if not m or m.group(1).strip() == "nothing":
        return []
    return [t.strip() for t in re.split(r",\s*|\s+and\s+", m.group(1)) if t.strip()]


def _choose_list(instruction: str, html: str) -> str:
    target = re.match(r"Select (.*) from the list", instruction).group(1)
    select = next(el for el in elements(html) if el.tag == "select")
    selected = re.search(r'<option[^>]* selected="true"[^>]*>([^<]*)</option>', html)
    if not selected or selected.group(1).strip() != target:
        return format_action(Action(kind=ActionKind.select, element=select.id, argument=target))
    return _click(_by_text(html, "Submit", ("button",)))


POLICIES: dict[str, Policy] = {
    "click-button": lambda ins, html: _click(_by_text(html, _quoted(ins)[0], ("button",))),
    "click-link": lambda ins, html: _click(_by_text(html, _quoted(ins)[0])),
    "click-test": lambda ins, html: _click(_by_text(html, "Click Me!", ("button",))),
    "click-dialog": lambda ins, html: _click(next(e.id for e in elements(html) if e.attrs.get("title") == "Close")),
    "focus-text": lambda ins, html: _click(next(e.id for e in elements(html) if e.tag == "input")),
    "click-tab": lambda ins, html: _click(_by_text(html, re.search(r"(Tab #\d+)", ins).group(1), ("a",))),
    "enter-text": lambda ins, html: _form(html, _quoted(ins)[:1], "Submit"),
    "enter-password": lambda ins, html: _form(html, _quoted(ins)[:1] * 2, "Submit"),
    "login-user": lambda ins, html: _form(html, _quoted(ins)[:2], "Login"),
    "click-checkboxes": lambda ins, html: _choose(html, _select_targets(ins)),
    "click-option": lambda ins, html: _choose(html, _select_targets(ins)),
    "choose-list": _choose_list,
}


def scripted_action(task_id: str, instruction: str, html: str) -> str:
    """The next action of the scripted policy for ``task_id`` (``miniwob/<name>``)."""
    name = task_id.split("/", 1)[-1]
    if name not in POLICIES:
        raise KeyError(f"no scripted policy for {task_id}; scripted: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](instruction, html)
