"""Observation: the page as simplified HTML with integer element ids (DESIGN.md §4).

The work happens in the page, in one ``evaluate`` of ``observe.js``; this module passes it the config
and reads the result back. :func:`elements` reads an observation's HTML back into a list of elements,
for scripted policies and tests.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from typing import Any

from webrl.config import ObservationConfig
from webrl.types import Observation

OBSERVE_JS = resources.files("envpool").joinpath("observe.js").read_text()


def script_options(cfg: ObservationConfig) -> dict:
    return {
        "maxChars": cfg.max_chars,
        "textCap": cfg.text_cap,
        "attributes": list(cfg.attributes),
        "viewportOnly": cfg.viewport_only,
        "timeBudgetMs": cfg.time_budget_ms,
    }


@functools.lru_cache(maxsize=16)
def observe_script(reward_js: str | None) -> str:
    """observe.js with a suite's reward function spliced in, so that one evaluation reads both."""
    return f"(opts) => {{ opts.reward = {reward_js or 'null'}; return ({OBSERVE_JS.strip()})(opts); }}"


@dataclass
class PageState:
    """What one evaluation in the page returns: the observation and what the pool needs besides."""

    observation: Observation
    reward: Any  # the suite's reward function's result (None without one, or if it threw)
    pending_navigation: bool  # a navigation has not replaced the page yet, or the new one is still parsing
    element_count: int
    frame_ids: frozenset[int]  # element ids that live inside iframes


async def observe(page, cfg: ObservationConfig, *, reward_js: str | None = None, error: str | None = None,
                  notes: list[str] | None = None) -> PageState:
    """Simplified HTML of ``page`` (a Playwright page) under the config's budgets, in one evaluation."""
    r = await page.evaluate(observe_script(reward_js), script_options(cfg))
    notes = list(notes or [])
    if r["truncated"]:
        notes.append(f"page truncated at the {r['reason']} budget")
    obs = Observation(url=r["url"], html=r["html"], element_count=r["elementCount"], truncated=r["truncated"],
                      error=error, notes=notes)
    return PageState(obs, r["reward"], bool(r["pendingNavigation"]), r["elementCount"], frozenset(r["frameIds"]))


@dataclass
class Element:
    id: int
    tag: str
    attrs: dict[str, str]
    text: str = ""


class _ElementReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.open: list[Element | None] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        el = Element(int(a.pop("id")), tag, a) if a.get("id", "").isdigit() else None
        if el is not None:
            self.elements.append(el)
        self.open.append(el)

    def handle_endtag(self, tag):
        if self.open:
            self.open.pop()

    def handle_data(self, data):
        text = data.strip()
        if text:
            for el in self.open:
                if el is not None:
                    el.text = f"{el.text} {text}".strip()


def elements(html: str) -> list[Element]:
    """The elements with ids in an observation's HTML, in id order, each with the text inside it."""
    reader = _ElementReader()
    reader.feed(html)
    return sorted(reader.elements, key=lambda e: e.id)
