"""Carry out one :class:`Action` on a Playwright page. Failures raise :class:`ActionError` with a
message meant for the agent ("element 12 is not on the page ...")."""

from __future__ import annotations

from dataclasses import dataclass

from playwright.async_api import Error as PlaywrightError

from webrl.types import Action, ActionKind

ELEMENT_ATTR = "data-webrl-id"  # written by observe.js


class ActionError(Exception):
    """The action could not be carried out; the message is shown to the agent next step."""


@dataclass(frozen=True)
class KnownIds:
    """The ids the latest observation handed out: ``0..count-1``, some of them inside iframes."""

    count: int
    in_frames: frozenset[int] = frozenset()


async def locate(page, element: int, known: KnownIds | None = None):
    """The element with this id in the latest observation. With ``known``, an id the observation
    never gave is refused at once and a main-frame element is found without a round trip."""
    selector = f'[{ELEMENT_ATTR}="{element}"]'
    if known is not None:
        if element >= known.count:
            raise ActionError(_missing(element, known.count))
        if element not in known.in_frames:
            return page.main_frame.locator(selector).first
    for frame in page.frames:
        loc = frame.locator(selector)
        if await loc.count():
            return loc.first
    raise ActionError(_missing(element, known.count if known else None))


def _missing(element: int, count: int | None) -> str:
    ids = f" (ids 0-{count - 1})" if count else ""
    return f"element {element} is not on the page{ids}; use an id from the current observation"


async def _select(loc, element: int, wanted: str, ms: float) -> None:
    tag, options = await loc.evaluate("el => [el.tagName.toLowerCase(), Array.from(el.options || [], o => o.text)]",
                                      timeout=ms)
    if tag != "select":
        raise ActionError(f"element {element} is a <{tag}>, not a <select>; click it instead")
    key = wanted.strip().lower()
    for index, text in enumerate(options):
        if text.strip().lower() == key:
            await loc.select_option(index=index, timeout=ms)
            return
    raise ActionError(f"element {element} has no option {wanted!r}; options: {', '.join(map(repr, options[:20]))}")


TYPE_MS_PER_CHAR = 150  # typing's allowance per character on top of the action timeout


def extra_time_s(action: Action) -> float:
    """Time an action may take beyond the action timeout: typing's allowance per character."""
    typing = action.kind in (ActionKind.type, ActionKind.search)
    return TYPE_MS_PER_CHAR * len(action.argument or "") / 1000 if typing else 0.0


async def _type(loc, text: str, ms: float) -> None:
    """Clear a field, then type ``text`` key by key so the page sees real key events (MiniWoB's terminal
    builds its command from keydown events; date inputs take no partial value). Playwright sends each
    character as its own key events, which on a loaded machine ran a 50-character review past the action
    timeout: typing gets the timeout plus ``TYPE_MS_PER_CHAR`` per character."""
    await loc.fill("", timeout=ms)
    await loc.press_sequentially(text, timeout=ms + TYPE_MS_PER_CHAR * len(text))


async def execute(page, action: Action, timeout_s: float, known: KnownIds | None = None) -> None:
    """Perform ``action`` on ``page`` within ``timeout_s``. ``exit`` and ``invalid`` do nothing here.

    Element actions get three quarters of the time: an element that went stale (the page changed
    since the observation) fails with an error the agent reads, leaving time to observe the page."""
    ms = timeout_s * 1000
    kind = action.kind
    try:
        if kind in (ActionKind.exit, ActionKind.invalid):
            return
        if kind is ActionKind.scroll_up or kind is ActionKind.scroll_down:
            sign = -1 if kind is ActionKind.scroll_up else 1
            await page.evaluate("s => window.scrollBy(0, s * window.innerHeight * 2 / 3)", sign)
        elif kind is ActionKind.press_enter:
            await page.keyboard.press("Enter")
        elif kind is ActionKind.go_back:
            await page.go_back(wait_until="domcontentloaded", timeout=ms)
        elif kind is ActionKind.go_forward:
            await page.go_forward(wait_until="domcontentloaded", timeout=ms)
        else:
            loc = await locate(page, action.element, known)
            ms = ms * 3 / 4
            if kind is ActionKind.click:
                await loc.click(timeout=ms)
            elif kind is ActionKind.hover:
                await loc.hover(timeout=ms)
            elif kind is ActionKind.select:
                await _select(loc, action.element, action.argument or "", ms)
            else:  # type, search
                await _type(loc, action.argument or "", ms)
                if kind is ActionKind.search:
                    await loc.press("Enter", timeout=ms)
        # No wait for a page load here: the observation after the action tells whether a navigation
        # is under way (observe.js: pendingNavigation) and the pool waits for it then.
    except PlaywrightError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        target = f" on element {action.element}" if action.element is not None else ""
        raise ActionError(f"{kind.value}{target} failed: {first_line}") from e
