"""Symbolic oracle plans: each step names its element the way a person would (the link's target, the
button's text, the form field's name) instead of the integer id an observation hands out, and
:func:`resolve` turns it into literal action text against the observation the agent would see.

    plan = [search("Hearthstone Kettle", name="q"), click(href="/product/HK-1050"), answer("$87.99")]
    resolve(plan[1], observation_html)   # 'do(action="Click", element="16")'

A target must pick exactly one element of the page (or the first one after its ``after`` anchor);
anything else raises :class:`PlanError` naming the step and the candidates, so a template that no
longer fits its page fails loudly when the tasks are generated.
"""

from __future__ import annotations

from dataclasses import dataclass

from envpool.actions import format_action
from envpool.observation import Element, elements
from webrl.types import Action, ActionKind


class PlanError(ValueError):
    """A plan step that does not fit the page: no element, or several, match its target."""


def _squash(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Target:
    """Which element a step acts on; every given field must hold. ``after``: the first element that
    matches and comes after (in DOM order, so id order) the single element ``after`` matches;
    ``nth``: the nth of the matches (radio buttons, whose values the observation leaves out)."""

    tag: str | None = None  # a, button, input, select, textarea
    text: str | None = None  # its visible text, exactly (whitespace collapsed)
    name: str | None = None  # its name attribute (form fields)
    href: str | None = None  # its href attribute, exactly
    label: str | None = None  # its aria-label
    value: str | None = None  # its value attribute
    nth: int | None = None  # of several matches, this one (0-based, in DOM order)
    after: Target | None = None

    def matches(self, el: Element) -> bool:
        """Whether ``el`` satisfies every field but ``after``."""
        a = el.attrs
        return ((self.tag is None or el.tag == self.tag)
                and (self.text is None or _squash(el.text) == _squash(self.text))
                and (self.name is None or a.get("name") == self.name)
                and (self.href is None or a.get("href") == self.href)
                and (self.label is None or a.get("aria-label") == self.label)
                and (self.value is None or a.get("value") == self.value))

    def describe(self) -> str:
        fields = [f"{k}={v!r}" for k in ("tag", "text", "name", "href", "label", "value", "nth")
                  if (v := getattr(self, k)) is not None]
        own = f"<{' '.join(fields)}>"
        return f"{own} after {self.after.describe()}" if self.after else own

    def find(self, page: list[Element]) -> Element:
        """The one element of ``page`` this target picks; :class:`PlanError` when none or several do."""
        start = -1
        if self.after is not None:
            start = self.after.find(page).id
            hits = [el for el in page if el.id > start and self.matches(el)][:1]
        else:
            hits = [el for el in page if self.matches(el)]
            if self.nth is not None:
                hits = hits[self.nth:self.nth + 1]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise PlanError(f"no element matches {self.describe()}")
        shown = ", ".join(f"{el.id} <{el.tag}> {el.text[:40]!r}" for el in hits[:6])
        raise PlanError(f"{len(hits)} elements match {self.describe()} ({shown}); narrow it (e.g. with after=...)")


@dataclass(frozen=True)
class Step:
    """One symbolic action: its kind, the element it acts on (if any) and its argument (if any)."""

    kind: ActionKind
    target: Target | None = None
    argument: str | None = None

    def describe(self) -> str:
        parts = [self.kind.value]
        if self.target is not None:
            parts.append(self.target.describe())
        if self.argument is not None:
            parts.append(repr(self.argument))
        return " ".join(parts)


def click(**target) -> Step:
    return Step(ActionKind.click, Target(**target))


def type_(text: str, **target) -> Step:
    return Step(ActionKind.type, Target(**target), text)


def search(text: str, **target) -> Step:
    """Type ``text`` into the field and press Enter."""
    return Step(ActionKind.search, Target(**target), text)


def select(option: str, **target) -> Step:
    """Choose the option whose visible text is ``option`` in a ``<select>``."""
    return Step(ActionKind.select, Target(**target), option)


def answer(message: str) -> Step:
    """End the episode with ``exit(message=...)``: the answer, or "Done" after a change."""
    return Step(ActionKind.exit, None, message)


def go_back() -> Step:
    return Step(ActionKind.go_back)


def resolve(step: Step, html: str) -> str:
    """The literal action text of ``step`` on the page whose observation HTML is ``html``."""
    element = None
    if step.target is not None:
        try:
            element = step.target.find(elements(html)).id
        except PlanError as e:
            raise PlanError(f"step {step.describe()}: {e}") from None
    return format_action(Action(kind=step.kind, element=element, argument=step.argument))
