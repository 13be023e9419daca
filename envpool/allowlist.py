"""Navigation allowlist: the agent's browser stays inside a set of origins.

Enforced per browser context by a Playwright route on every request: navigations, redirects (each hop
is fetched without following and its ``Location`` checked), popups and iframes (their navigations are
requests of the same context), form posts (navigations with a body) and downloads (off-origin ones
never start; same-origin ones are refused by the context). Service workers are blocked so that no
request escapes the route.
"""

from __future__ import annotations

import asyncio
import contextlib
from html import escape
from urllib.parse import urljoin, urlsplit

# schemes that load nothing from the network
MAX_REDIRECTS = 20
_LOCAL_SCHEMES = {"about", "data", "blob", "javascript"}


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (default ports dropped), lower-cased."""
    u = urlsplit(url)
    scheme, host = u.scheme.lower(), (u.hostname or "").lower()
    port = u.port
    if port is None or (scheme, port) in {("http", 80), ("https", 443)}:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


class Allowlist:
    def __init__(self, origins: list[str]):
        self.origins = {origin_of(o) for o in origins}

    def allows(self, url: str) -> bool:
        scheme = urlsplit(url).scheme.lower()
        if scheme in _LOCAL_SCHEMES:
            return True
        if scheme not in ("http", "https"):
            return False
        return origin_of(url) in self.origins

    def describe(self) -> str:
        return ", ".join(sorted(self.origins)) or "(none)"


# Counts navigations a document starts (link, form, script), so that a step can tell that one is on
# its way before its request exists; observe.js reads and resets the count with each observation.
NAVIGATION_WATCH_JS = """
if (window.navigation && !window.__webrlNavWatch) {
  window.__webrlNavWatch = true;
  window.navigation.addEventListener("navigate", (e) => {
    if (!e.destination.sameDocument) window.__webrlNav = (window.__webrlNav || 0) + 1;
  });
}
"""


def blocked_page(url: str, allowlist: Allowlist) -> str:
    return (
        # the data: icon stops Chromium fetching /favicon.ico from the blocked origin (it is not routed)
        "<!doctype html><title>Blocked</title><link rel=\"icon\" href=\"data:,\"><body><h1>Blocked</h1>"
        f"<p>Navigation to {escape(url)} was blocked: it is outside this task's allowed origins "
        f"({escape(allowlist.describe())}). Go back to continue.</p></body>"
    )


class NavigationGuard:
    """Routes every request of a browser context through an :class:`Allowlist`. What it blocks is
    appended to ``notes``; :meth:`idle` waits until no request is being decided, so that a step's
    observation sees the outcome of everything its action set off."""

    def __init__(self, allowlist: Allowlist, notes: list[str], timeout_s: float):
        self.allowlist, self.notes, self.timeout_s = allowlist, notes, timeout_s
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.navigations = 0  # navigation requests decided so far
        self._navigated = asyncio.Event()

    async def install(self, context) -> None:
        await context.add_init_script(NAVIGATION_WATCH_JS)
        await context.route("**/*", self._handle)

    async def wait_navigation(self, since: int, timeout_s: float) -> None:
        """Wait until a navigation request after the ``since``-th has been decided."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.navigations <= since:
                    self._navigated.clear()
                    await self._navigated.wait()

    async def idle(self, timeout_s: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)

    async def _handle(self, route, request) -> None:
        self._busy += 1
        self._idle.clear()
        nav = request.is_navigation_request()
        try:
            await self._decide(route, request, nav)
        except Exception as e:  # noqa: BLE001 - a request must never take the episode down with it
            if "closed" not in str(e):
                self.notes.append(f"request to {request.url} failed: {str(e).splitlines()[0]}")
        finally:
            if nav:
                self.navigations += 1
                self._navigated.set()
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def _decide(self, route, request, nav: bool) -> None:
        url, allowlist, notes = request.url, self.allowlist, self.notes
        if not allowlist.allows(url):
            what = "navigation" if nav else f"{request.resource_type} request"
            notes.append(f"blocked {what} to {url} (allowed: {allowlist.describe()})")
            if not nav:
                await route.abort("blockedbyclient")
                return
            await route.fulfill(status=403, content_type="text/html", body=blocked_page(url, allowlist))
            return
        if not nav:
            await route.continue_()
            return
        # A navigation: follow its redirects ourselves, one hop at a time, checking every Location.
        # Chromium does not route the hops of a redirect it follows, so it is only ever handed one
        # redirect, straight to the final URL we have checked.
        try:
            response, target = await route.fetch(max_redirects=0, timeout=self.timeout_s * 1000), url
            for _ in range(MAX_REDIRECTS):
                location = response.headers.get("location")
                if not (300 <= response.status < 400 and location):
                    break
                source, target = target, urljoin(target, location)
                if not allowlist.allows(target):
                    notes.append(f"blocked redirect from {source} to {target} (allowed: {allowlist.describe()})")
                    await route.fulfill(status=403, content_type="text/html", body=blocked_page(target, allowlist))
                    return
                keep_method = response.status in (307, 308)
                response = await route.fetch(url=target, max_redirects=0, timeout=self.timeout_s * 1000,
                                             **({} if keep_method else {"method": "GET", "post_data": ""}))
            else:
                raise RuntimeError(f"more than {MAX_REDIRECTS} redirects")
        except Exception as e:  # noqa: BLE001 - the page sees a network error, as it would without us
            notes.append(f"navigation to {url} failed: {str(e).splitlines()[0]}")
            await route.abort("failed")
            return
        if "attachment" in response.headers.get("content-disposition", "").lower():
            notes.append(f"download of {target} blocked")
            await route.fulfill(status=204)  # "no content": the page stays as it was
        elif target == url:
            await route.fulfill(response=response)
        else:
            await route.fulfill(status=302, headers={"location": target})
