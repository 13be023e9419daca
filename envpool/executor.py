"""Carry out one :class:`Action` on a Playwright page. Failures raise :class:`ActionError` with a
message meant for the agent ("element 12 is not on the page ...")."""

from __future__ import annotations

from playwright.async_api import Error as PlaywrightError

from webrl.types import Action, ActionKind

ELEMENT_ATTR = "data-webrl-id"  # written by observe.js


class ActionError(Exception):
    """The action could not be carried out; the message is shown to the agent next step."""


async def locate(page, element: int):
    """The element with this id in the latest observation, searched in every frame of the page."""
    selector = f'[{ELEMENT_ATTR}="{element}"]'
    for frame in page.frames:
        loc = frame.locator(selector)
        if await loc.count():
            return loc.first
    raise ActionError(f"element {element} is not on the page; use an id from the current observation")


async def _select(loc, element: int, wanted: str) -> None:
    tag, options = await loc.evaluate("el => [el.tagName.toLowerCase(), Array.from(el.options || [], o => o.text)]")
    if tag != "select":
        raise ActionError(f"element {element} is a <{tag}>, not a <select>; click it instead")
    key = wanted.strip().lower()
    for index, text in enumerate(options):
        if text.strip().lower() == key:
            await loc.select_option(index=index)
            return
    raise ActionError(f"element {element} has no option {wanted!r}; options: {', '.join(map(repr, options[:20]))}")


async def execute(page, action: Action, timeout_s: float) -> None:
    """Perform ``action`` on ``page``. ``exit`` and ``invalid`` do nothing here."""
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
            loc = await locate(page, action.element)
            if kind is ActionKind.click:
                await loc.click(timeout=ms)
            elif kind is ActionKind.hover:
                await loc.hover(timeout=ms)
            elif kind is ActionKind.select:
                await _select(loc, action.element, action.argument or "")
            else:  # type, search: clear, then type key by key so the page sees real key events
                await loc.fill("", timeout=ms)
                await loc.press_sequentially(action.argument or "", timeout=ms)
                if kind is ActionKind.search:
                    await loc.press("Enter", timeout=ms)
        await page.wait_for_load_state("domcontentloaded", timeout=ms)
    except PlaywrightError as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        target = f" on element {action.element}" if action.element is not None else ""
        raise ActionError(f"{kind.value}{target} failed: {first_line}") from e
