"""What the three sites share: routing a request to its episode's state, templates, forms, paging.

A site is a :class:`Site`; its views are plain ``async def view(page: Page) -> Response`` functions
registered with ``@site.route(path, methods)``. The episode comes from the ``webrl_episode`` cookie;
a request without it works on the shared browse state.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from envpool.sandbox.clock import now_stamp
from envpool.sandbox.process import COOKIE
from envpool.sandbox.shop_rules import ORDER_STATUSES, money
from envpool.sandbox.states import SiteState, StateStore, UnknownEpisode
from webrl.config import SandboxConfig

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_FORM_BYTES = 64 * 1024
MACROS = ("pages_nav", "notice_box", "errors_box", "text_field", "select_field", "post_button")


class NotFound(Exception):
    """The page asked for does not exist; the message says what was missing."""


@dataclass
class Pager:
    """One page of a listing, with links to its neighbours that keep the other query arguments."""

    items: list
    number: int
    pages: int
    total: int
    size: int
    base: str
    args: dict

    def url(self, number: int) -> str:
        return f"{self.base}?{urlencode({**self.args, 'page': number})}"

    @property
    def first(self) -> int:
        """1-based position of the first item shown (for "items 16-30 of 97")."""
        return (self.number - 1) * self.size + 1 if self.items else 0

    @property
    def last(self) -> int:
        return (self.number - 1) * self.size + len(self.items)


class Page:
    """One request as a view sees it: the request, the site's database in this episode's state,
    form and query helpers, and rendering."""

    def __init__(self, site: "Site", request: Request, state: SiteState):
        self.site, self.request, self.state = site, request, state
        self.db: sqlite3.Connection = state.db(site.name)
        self.cfg = site.cfg
        self._form: dict[str, str] | None = None

    # ---- input ----------------------------------------------------------------------------------
    def arg(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()

    def int_arg(self, name: str, default: int = 1) -> int:
        try:
            return max(1, int(self.arg(name, str(default))))
        except ValueError:
            return default

    def path_int(self, name: str) -> int:
        try:
            return int(self.request.path_params[name])
        except ValueError:
            raise NotFound(f"{name} must be a number") from None

    async def form(self) -> dict[str, str]:
        """The POSTed form (application/x-www-form-urlencoded); the last value of a repeated field wins."""
        if self._form is None:
            body = await self.request.body()
            if len(body) > MAX_FORM_BYTES:
                raise HTTPException(413, "form too large")
            self._form = {k: v.strip() for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)}
        return self._form

    def now(self) -> str:
        return now_stamp(self.cfg.today)

    # ---- output ---------------------------------------------------------------------------------
    def notice(self, text: str) -> None:
        """A message shown once, on the next page rendered in this state (after a redirect)."""
        self.state.flash[self.site.name] = text

    def render(self, template: str, http_status: int = 200, **context) -> HTMLResponse:
        notice = self.state.flash.pop(self.site.name, None)
        html = self.site.templates.get_template(template).render(
            page=self, notice=notice, path=self.request.url.path, **self.site.globals(self), **context)
        return HTMLResponse(html, status_code=http_status)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def paginate(self, sql: str, params: tuple | dict = (), size: int | None = None) -> Pager:
        """Run ``sql`` (a SELECT without LIMIT) for the page number in ``?page=``."""
        size = size or self.cfg.page_size
        total = self.db.execute(f"SELECT COUNT(*) FROM ({sql})", params).fetchone()[0]
        pages = max(1, math.ceil(total / size))
        number = min(self.int_arg("page"), pages)
        rows = self.db.execute(f"{sql} LIMIT {size} OFFSET {(number - 1) * size}", params).fetchall()
        args = {k: v for k, v in self.request.query_params.items() if k != "page" and v != ""}
        return Pager(rows, number, pages, total, size, self.request.url.path, args)

    def one(self, sql: str, params: tuple | dict = (), what: str = "page") -> sqlite3.Row:
        """The single row ``sql`` finds, else :class:`NotFound` naming ``what``."""
        row = self.db.execute(sql, params).fetchone()
        if row is None:
            raise NotFound(f"no such {what}")
        return row


class Site:
    """A Starlette app whose views run on the request's episode state."""

    def __init__(self, name: str, title: str, store: StateStore, cfg: SandboxConfig, urls: dict[str, str]):
        self.name, self.title, self.store, self.cfg, self.urls = name, title, store, cfg, urls
        self.routes: list[Route] = []
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader([TEMPLATES / name, TEMPLATES / "common"]),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters.update(money=money, status_label=lambda s: ORDER_STATUSES.get(s, s),
                                      date=lambda s: (s or "")[:10])
        macros = self.templates.get_template("macros.html").module  # every template may call them
        self.templates.globals.update({name: getattr(macros, name) for name in MACROS})

    def globals(self, page: Page) -> dict:
        """Names every template of the site sees (sites override to add the signed-in user)."""
        return {"site_title": self.title, "urls": self.urls}

    def route(self, path: str, methods: tuple[str, ...] = ("GET",)):
        def register(view):
            async def endpoint(request: Request) -> Response:
                try:
                    state = self.store.get(request.cookies.get(COOKIE))
                except UnknownEpisode as e:
                    return self.error_page(410, "This episode has ended", str(e))
                page = Page(self, request, state)
                try:
                    return await view(page)
                except NotFound as e:
                    return page.render("error.html", http_status=404, title="Page not found", heading="Page not found",
                                       message=str(e).capitalize())

            self.routes.append(Route(path, endpoint, methods=list(methods)))
            return view

        return register

    def error_page(self, status: int, heading: str, message: str) -> HTMLResponse:
        html = self.templates.get_template("bare_error.html").render(
            site_title=self.title, heading=heading, message=message)
        return HTMLResponse(html, status_code=status)

    def app(self) -> Starlette:
        async def http_error(request: Request, exc: HTTPException) -> Response:
            messages = {404: "There is no page at this address.", 405: "This page does not accept that request."}
            return self.error_page(exc.status_code, f"Error {exc.status_code}", messages.get(exc.status_code, exc.detail))

        return Starlette(routes=self.routes, exception_handlers={HTTPException: http_error})
