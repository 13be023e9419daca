"""Feasibility rules for the bundled sandbox sites: a generated task may name only things that exist.

:class:`SandboxCatalog` reads the entities the sites' generated data holds (the same data the server
builds from ``env.sandbox``: same seed, same entities): products, brands and SKUs, order numbers
(all of them for the admin, the signed-in customer's for the shop), forum names and usernames.
:func:`sandbox_rules` turns it into per-site rules, each ``rule(instruction) -> None | reason``:

- shop, admin: an order number (nine digits, ``#000000698``) must be an order the site shows; a SKU
  (``SO-1368``) must exist; a product phrase (a known brand followed by capitalised words, e.g.
  "Auralis Turbo Wireless Mouse") must be, or start with, or begin, a product's name.
- forum: ``f/<name>`` must be a forum; a CamelCase word (``BraveOtter926``) or ``u/<name>`` must be a user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

Rule = Callable[[str], "str | None"]

ORDER_NUMBER = re.compile(r"#?\b(\d{9})\b")
SKU = re.compile(r"\b([A-Z]{2}-\d{4})\b")
FORUM_NAME = re.compile(r"(?:^|[\s(\"'])/?f/([A-Za-z0-9_]+)")
USER_NAME = re.compile(r"(?:\bu/([A-Za-z0-9_]+))|\b([A-Z][a-z]+(?:[A-Z][a-z]+)+\d*)\b")
CAPITALISED_WORD = re.compile(r"\s+([A-Z0-9][\w'&.-]*)")


@dataclass
class SandboxCatalog:
    """The entities of the sandbox sites' data."""

    products: set[str] = field(default_factory=set)
    brands: set[str] = field(default_factory=set)
    skus: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)  # every order number (the admin sees them all)
    customer_orders: set[str] = field(default_factory=set)  # the signed-in customer's (the shop shows these)
    forums: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    @classmethod
    def from_config(cls, sandbox_cfg) -> SandboxCatalog:
        """Build the sites' data for ``env.sandbox`` (about a second) and read its entities."""
        from envpool.sandbox.build import build_templates

        dbs = build_templates(sandbox_cfg)
        try:
            shop, forum = dbs["shop"], dbs["forum"]
            return cls(
                products={r[0] for r in shop.execute("SELECT name FROM products")},
                brands={r[0] for r in shop.execute("SELECT DISTINCT brand FROM products")},
                skus={r[0] for r in shop.execute("SELECT sku FROM products")},
                orders={r[0] for r in shop.execute("SELECT number FROM orders")},
                customer_orders={r[0] for r in shop.execute("SELECT number FROM orders WHERE customer_id = 1")},
                forums={r[0] for r in forum.execute("SELECT name FROM forums")},
                users={r[0] for r in forum.execute("SELECT username FROM users")},
            )
        finally:
            for conn in dbs.values():
                conn.close()

    def examples(self, site: str, n: int = 8) -> list[str]:
        """A few entity names of a site, for the generator's prompt (sorted, so prompts are reproducible)."""
        if site in ("shop", "admin"):
            return sorted(self.products)[:: max(1, len(self.products) // n)][:n]
        if site == "forum":
            return [f"f/{name}" for name in sorted(self.forums)[:n]]
        return []


def _orders_rule(known: set[str], where: str) -> Rule:
    def rule(text: str) -> str | None:
        for number in ORDER_NUMBER.findall(text):
            if number not in known:
                return f"mentions order #{number}, which {where} does not show"
        return None
    return rule


def _sku_rule(catalog: SandboxCatalog) -> Rule:
    def rule(text: str) -> str | None:
        for sku in SKU.findall(text):
            if sku not in catalog.skus:
                return f"mentions SKU {sku}, which no product has"
        return None
    return rule


def product_phrases(text: str, brands: set[str]) -> list[str]:
    """Each known brand in ``text`` with the capitalised words that follow it ("Auralis Compact Phone Case")."""
    phrases = []
    for brand in sorted(brands, key=len, reverse=True):
        for m in re.finditer(rf"\b{re.escape(brand)}\b", text):
            phrase, pos = brand, m.end()
            while (w := CAPITALISED_WORD.match(text, pos)) is not None:
                phrase += " " + w.group(1).rstrip(".'")
                pos = w.end()
            phrases.append(phrase)
    return phrases


def _product_rule(catalog: SandboxCatalog) -> Rule:
    def known(phrase: str) -> bool:
        return any(p == phrase or p.startswith(phrase + " ") or phrase.startswith(p + " ") for p in catalog.products)

    def rule(text: str) -> str | None:
        for phrase in product_phrases(text, catalog.brands):
            if phrase not in catalog.brands and not known(phrase):
                return f"mentions the product '{phrase}', which the shop does not sell"
        return None
    return rule


def _forum_rule(catalog: SandboxCatalog) -> Rule:
    def rule(text: str) -> str | None:
        for name in FORUM_NAME.findall(text):
            if name not in catalog.forums:
                return f"mentions forum f/{name}, which does not exist"
        for prefixed, camel in USER_NAME.findall(text):
            name = prefixed or camel
            if name not in catalog.users:
                return f"mentions user {name}, who does not exist on the forum"
        return None
    return rule


def sandbox_rules(catalog: SandboxCatalog) -> dict[str, list[Rule]]:
    """Site -> feasibility rules for the sandbox's shop, admin and forum."""
    return {
        "shop": [_orders_rule(catalog.customer_orders, "the signed-in customer's order history"), _sku_rule(catalog),
                 _product_rule(catalog)],
        "admin": [_orders_rule(catalog.orders, "the admin"), _sku_rule(catalog), _product_rule(catalog)],
        "forum": [_forum_rule(catalog)],
    }
