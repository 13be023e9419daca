"""Navigation allowlist: the agent's browser stays inside a set of origins.

Enforced per browser context by a Playwright route on every request: navigations, redirects (each hop
is fetched without following and its ``Location`` checked), popups and iframes (their navigations are
requests of the same context), form posts (navigations with a body) and downloads (off-origin ones
never start; same-origin ones are refused by the context). Service workers are blocked so that no
request escapes the route.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urljoin, urlsplit

# schemes that load nothing from the network
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


def blocked_page(url: str, allowlist: Allowlist) -> str:
    return (
        "<!doctype html><title>Blocked</title><body><h1>Blocked</h1>"
        f"<p>Navigation to {escape(url)} was blocked: it is outside this task's allowed origins "
        f"({escape(allowlist.describe())}). Go back to continue.</p></body>"
    )


async def install(context, allowlist: Allowlist, notes: list[str], timeout_s: float) -> None:
    """Route every request of ``context`` through ``allowlist``; what is blocked is appended to ``notes``."""

    async def handle(route, request):
        url = request.url
        nav = request.is_navigation_request()
        if not allowlist.allows(url):
            what = "navigation" if nav else f"{request.resource_type} request"
            notes.append(f"blocked {what} to {url} (allowed: {allowlist.describe()})")
            if nav:
                await route.fulfill(status=403, content_type="text/html", body=blocked_page(url, allowlist))
            else:
                await route.abort("blockedbyclient")
            return
        if not nav:
            await route.continue_()
            return
        # A navigation: fetch it ourselves without following redirects, so that every hop is checked.
        try:
            response = await route.fetch(max_redirects=0, timeout=timeout_s * 1000)
        except Exception as e:  # noqa: BLE001 - the page sees a network error, as it would without us
            notes.append(f"navigation to {url} failed: {e}")
            await route.abort("failed")
            return
        location = response.headers.get("location")
        if 300 <= response.status < 400 and location:
            target = urljoin(url, location)
            if not allowlist.allows(target):
                notes.append(f"blocked redirect from {url} to {target} (allowed: {allowlist.describe()})")
                await route.fulfill(status=403, content_type="text/html", body=blocked_page(target, allowlist))
                return
        await route.fulfill(response=response)

    await context.route("**/*", handle)
