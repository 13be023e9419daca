"""The vocabulary sandbox task templates are written in (``templates_shop.py``, ``templates_admin.py``,
``templates_forum.py``): a :class:`Template` is an intent with ``{{slots}}`` and a function that reads the
generated data (:class:`SiteData`) and yields :class:`Draft` instances, each with its slot values,
start page, symbolic oracle plan (:mod:`envpool.sandbox.task_plan`) and ``eval`` object (built with
the helpers below, WebArena's shape plus our ``state_check``).

    @register("shop-product-price", "What is the price of the {{product}}?", INFO)
    def product_price(data):
        for p in data.sample("shop", "SELECT * FROM products WHERE status = 'enabled'", 4, "price"):
            yield Draft({"product": p["name"]}, [search(p["name"], name="q"), click(href=f"/product/{p['sku']}"),
                                                 answer(money(p["price"]))], includes(f"{p['price']:.2f}"))
"""

from __future__ import annotations

import random
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from envpool.sandbox.build import build_templates
from envpool.sandbox.states import hot_rank
from envpool.sandbox.task_plan import Step
from webrl.config import SandboxConfig

INFO, STATE, NAV = "information-seeking", "state-changing", "navigation"  # answered / change the site / reach a page
SLOT = re.compile(r"\{\{(\w+)\}\}")
DONE = "Done"  # what the oracle of a state-changing or navigation task answers


@dataclass
class Draft:
    """One instance of a template, before its plan is resolved against the live pages."""

    values: dict[str, Any]  # the slots' values (WebArena's instantiation_dict)
    plan: list[Step]
    eval: dict
    start: str = "/"  # path on the template's site where the episode starts


@dataclass
class Template:
    """An intent with ``{{slots}}`` and the function that makes its instances from the data."""

    id: str  # <site>-<name>: the task ids are sandbox/<id>-<n>
    intent: str
    kind: str  # INFO (answered with exit(message=...)), STATE (changes the site) or NAV (ends on a page)
    make: Callable[["SiteData"], Iterable[Draft]]
    count: int = 4  # instances taken from what ``make`` yields, in its order
    held_out: bool = False  # every instance in the test split

    @property
    def site(self) -> str:
        return self.id.split("-", 1)[0]

    def fill(self, values: dict[str, Any]) -> str:
        """The intent with each slot replaced by its value; a slot without a value is an error."""
        missing = set(SLOT.findall(self.intent)) - set(values)
        if missing:
            raise KeyError(f"template {self.id}: no value for {', '.join(sorted(missing))}")
        return SLOT.sub(lambda m: str(values[m.group(1)]), self.intent)


def registry(templates: list[Template]):
    """A decorator that turns an instance maker into a :class:`Template` appended to ``templates``."""

    def register(template_id: str, intent: str, kind: str, *, count: int = 4, held_out: bool = False):
        def wrap(make: Callable[[SiteData], Iterable[Draft]]) -> Template:
            t = Template(template_id, intent, kind, make, count, held_out)
            templates.append(t)
            return t

        return wrap

    return register


class SiteData:
    """Read access to the databases the sites start every episode from (same config, same rows)."""

    def __init__(self, cfg: SandboxConfig):
        self.cfg = cfg
        self.dbs = build_templates(cfg)
        for conn in self.dbs.values():
            conn.row_factory = sqlite3.Row
            conn.create_function("hot_rank", 2, hot_rank, deterministic=True)

    def rows(self, db: str, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.dbs[db].execute(sql, params).fetchall()

    def one(self, db: str, sql: str, params: tuple | dict = ()) -> sqlite3.Row:
        row = self.dbs[db].execute(sql, params).fetchone()
        if row is None:
            raise LookupError(f"no row in {db} for {sql!r} {params!r}")
        return row

    def value(self, db: str, sql: str, params: tuple | dict = ()):
        return self.one(db, sql, params)[0]

    def sample(self, db: str, sql: str, k: int, key: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """``k`` rows of the query, picked by a generator seeded with ``key`` (fewer if it has fewer)."""
        rows = self.rows(db, sql, params)
        return random.Random(f"sandbox-tasks/{key}").sample(rows, min(k, len(rows)))

    def shuffled(self, rows: list, key: str) -> list:
        rows = list(rows)
        random.Random(f"sandbox-tasks/{key}").shuffle(rows)
        return rows


# ---- eval objects ------------------------------------------------------------------------------
def exact(answer: str) -> dict:
    """string_match: the answer, normalised, equals ``answer``."""
    return {"eval_types": ["string_match"], "reference_answers": {"exact_match": str(answer)}}


def includes(*items: str) -> dict:
    """string_match: the answer contains each item (``a |OR| b`` accepts either)."""
    return {"eval_types": ["string_match"], "reference_answers": {"must_include": [str(i) for i in items]}}


def url_is(reference: str) -> dict:
    """url_match: the final page's URL lies under ``reference`` (with its query parameters)."""
    return {"eval_types": ["url_match"], "reference_url": reference, "url_note": "GOLD in PRED"}


def _contents(exact_text: str | None, include: list[str] | None) -> dict:
    if (exact_text is None) == (include is None):
        raise ValueError("give exactly one of exact= or includes=")
    return {"exact_match": str(exact_text)} if exact_text is not None else {"must_include": [str(i) for i in include]}


def state(site: str, sql: str, *, exact: str | None = None, includes: list[str] | None = None) -> dict:
    """state_check: the rows of ``sql`` on the episode's ``site`` database, as text, hold the contents."""
    return {"eval_types": ["state_check"],
            "state_check": [{"site": site, "sql": sql, "required_contents": _contents(exact, includes)}]}


def page(url: str, locator: str, *, exact: str | None = None, includes: list[str] | None = None) -> dict:
    """program_html: the text ``locator`` selects on ``url`` (``last``: the final page) holds the contents."""
    return {"eval_types": ["program_html"],
            "program_html": [{"url": url, "locator": locator, "required_contents": _contents(exact, includes)}]}


def all_of(*evals: dict) -> dict:
    """One eval object that needs every given one to pass (their checks multiply)."""
    out: dict = {"eval_types": []}
    for ev in evals:
        for key, value in ev.items():
            if key == "eval_types":
                out[key] += [t for t in value if t not in out[key]]
            elif key in ("state_check", "program_html"):
                out[key] = out.get(key, []) + value
            elif key in out and out[key] != value:
                raise ValueError(f"two evals disagree on {key}")
            else:
                out[key] = value
    return out


def sql_text(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def money(value: float) -> str:
    """``1234.5`` -> ``$1,234.50`` (how the sites print amounts)."""
    return f"${value:,.2f}"


def amount(value: float) -> str:
    """A must_include reference for an amount: ``1,234.50 |OR| 1234.50`` (with or without the comma)."""
    text = f"{value:,.2f}"
    return text if "," not in text else f"{text} |OR| {value:.2f}"
