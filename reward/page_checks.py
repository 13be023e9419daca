"""program_html on a live Playwright page: which page a target reads and the text its locator selects.

A target's ``url`` is ``last`` (the agent's final page, read as it is), a URL (opened in a new page of
the agent's browser context, so that its login cookies apply, then closed), or a helper:

- ``func:reddit_get_post_url('__last_url__')``: the post page the agent's final URL belongs to
  (``/f/<forum>/<id>/...`` -> ``/f/<forum>/<id>/``; any other URL stays as it is);
- ``func:shopping_get_latest_order_url()``: the customer's newest order. WebArena asks Magento's REST
  API with admin credentials; here it is read from the page content instead: the first link to
  ``/sales/order/view/order_id/N`` on the shop's order history (``<shopping>/sales/order/history/``),
  which lists the newest order first.

A ``locator`` is ``""`` (the page's HTML, entities decoded, as WebArena's ``page.content()``), a JS
expression (``document.querySelector(...).outerText``; one that throws selects ``""``), or
``func:gitlab_get_project_memeber_role(__page__, 'name')`` (the role in the member's row of a GitLab
project-members page; ``""`` when the member is absent).

Differences from WebArena: a URL target opens a new page rather than navigating the agent's page, so
``last`` always means the agent's final page (none of WebArena-Lite's configs lists ``last`` after
another URL); WebArena sleeps 3 s after opening a page, we wait until the network is idle for at most
``settle_s``; a JS result that is not a string reads as JavaScript writes it (``true``, ``27``, ``""``
for null).
"""

from __future__ import annotations

import contextlib
import html
import json
from urllib.parse import urljoin, urlsplit, urlunsplit

from reward.rule_config import LAST_URL_ARG, LOCATOR_HELPERS, PAGE_ARG, URL_HELPERS, HtmlTarget, helper_call

ORDER_HISTORY_PATH = "/sales/order/history/"
ORDER_VIEW_MARK = "/sales/order/view/order_id/"

_LATEST_ORDER_JS = """(mark) => {
  const link = [...document.querySelectorAll("a[href]")].find(a => a.href.includes(mark));
  return link ? link.href : null;
}"""

# the account's row among the members, then the role cell of the same row (WebArena's selectors)
_MEMBER_ROLE_JS = """(account) => {
  const names = [...document.querySelectorAll("td[data-label='Account'] span.gl-avatar-labeled-sublabel")];
  const index = names.findIndex(el => el.outerText.trim() === "@" + account);
  const roles = document.querySelectorAll("td.col-max-role span");
  return index >= 0 && roles[index] ? roles[index].outerText : "";
}"""


class PageReadError(Exception):
    """The target page could not be opened or read; the check fails with this reason."""


def reddit_post_url(url: str) -> str:
    """``http://h/f/books/12/a-title/comment/3`` -> ``http://h/f/books/12/``; other URLs as they are."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if len(segments) < 4 or segments[1] != "f":
        return url
    return urlunsplit((parts.scheme, parts.netloc, f"/f/{segments[2]}/{segments[3]}/", "", ""))


def js_text(value) -> str:
    """A JS evaluation's result as text, written as JavaScript would (null -> "", true -> "true")."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


async def _open(context, url: str, timeout_s: float, settle_s: float):
    """A new page of ``context`` at ``url``, loaded, with the network idle (or ``settle_s`` gone)."""
    page = None
    try:
        page = await context.new_page()
        await page.goto(url, wait_until="load", timeout=timeout_s * 1000)
    except Exception as e:  # noqa: BLE001 - any navigation failure fails the check, with its reason
        if page is not None:
            with contextlib.suppress(Exception):
                await page.close()
        raise PageReadError(f"could not open {url}: {str(e).splitlines()[0] if str(e) else e!r}") from None
    if settle_s > 0:
        with contextlib.suppress(Exception):
            await page.wait_for_load_state("networkidle", timeout=settle_s * 1000)
    return page


async def latest_order_url(page, sites: dict[str, str], timeout_s: float, settle_s: float) -> str:
    """The newest order's page, read off the shop's order history in the agent's context."""
    shop = sites.get("shopping")
    if not shop:
        raise PageReadError("shopping_get_latest_order_url needs the shopping site's URL (env.webarena.urls.shopping)")
    history_url = shop.rstrip("/") + ORDER_HISTORY_PATH
    history = await _open(page.context, history_url, timeout_s, settle_s)
    try:
        link = await history.evaluate(_LATEST_ORDER_JS, ORDER_VIEW_MARK)
    finally:
        await history.close()
    if not link:
        raise PageReadError(f"no order links ({ORDER_VIEW_MARK}...) on {history_url}: the customer has no orders")
    return link


async def target_url(page, target: HtmlTarget, sites: dict[str, str], timeout_s: float, settle_s: float) -> str:
    """The URL a target reads: ``last``, its own URL (relative to the agent's page), or a helper's."""
    if not target.url.startswith("func:"):
        return target.url if target.url == "last" else urljoin(page.url, target.url)
    call = helper_call(target.url, URL_HELPERS)
    args = [a.replace(LAST_URL_ARG, page.url) for a in call.args]
    if call.name == "reddit_get_post_url":
        return reddit_post_url(*args)
    return await latest_order_url(page, sites, timeout_s, settle_s)


async def select(page, locator: str, prep_actions: list[str]) -> str:
    """The text ``locator`` selects on ``page`` (see the module docstring)."""
    locator = locator.strip()
    if not locator:
        try:
            return html.unescape(await page.content())
        except Exception as e:  # noqa: BLE001 - a closed or crashed page
            raise PageReadError(f"could not read the HTML of {page.url}: {str(e).splitlines()[0] if str(e) else e!r}") from None
    if locator.startswith("func:"):
        call = helper_call(locator, LOCATOR_HELPERS)
        names = [a for a in call.args if a != PAGE_ARG]
        try:
            return js_text(await page.evaluate(_MEMBER_ROLE_JS, names[0] if names else ""))
        except Exception:  # noqa: BLE001 - a page without the members table selects nothing
            return ""
    for action in prep_actions:
        with contextlib.suppress(Exception):
            await page.evaluate(f"() => {{ {action} }}")
    try:
        return js_text(await page.evaluate(f"() => {locator}"))
    except Exception:  # noqa: BLE001 - WebArena: a locator that throws selects the empty string
        return ""


async def read_target(page, target: HtmlTarget, *, sites: dict[str, str], timeout_s: float,
                      settle_s: float) -> tuple[str, str]:
    """(text, url read) for one program_html target; raises :class:`PageReadError` when the page
    cannot be opened."""
    url = await target_url(page, target, sites, timeout_s, settle_s)
    if url == "last":
        return await select(page, target.locator, target.prep_actions), page.url
    opened = await _open(page.context, url, timeout_s, settle_s)
    try:
        return await select(opened, target.locator, target.prep_actions), opened.url
    finally:
        with contextlib.suppress(Exception):
            await opened.close()
