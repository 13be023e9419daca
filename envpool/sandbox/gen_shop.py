"""Shop data: nested categories, products with attributes, customers, two years of orders with their
status history, reviews (some awaiting moderation), and the signed-in customer's cart and wishlist.

Deterministic: every choice comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
import re
import sqlite3
from datetime import timedelta

from envpool.sandbox.clock import day_start, random_moment, stamp
from envpool.sandbox.seed_data import SeedData
from envpool.sandbox.shop_rules import DEFAULT_PASSWORD, shipping_amount, slugify
from webrl.config import SandboxConfig

NAME_SUFFIXES = ("II", "Plus", "Max", "Mini", "2.0", "Lite", "XL")


def _sku_prefix(top: str) -> str:
    """``"Home & Kitchen"`` -> ``"HK"``; ``"Grocery"`` -> ``"GR"``."""
    words = re.findall(r"[A-Za-z]+", top)
    return (words[0][:2] if len(words) == 1 else words[0][0] + words[1][0]).upper()


def _categories(conn: sqlite3.Connection, data: SeedData) -> dict[str, int]:
    ids: dict[str, int] = {}
    slugs: set[str] = set()
    for cid, (path, description) in enumerate(data.values("categories.tsv"), start=1):
        parent, _, name = path.rpartition("/")
        slug = slugify(name) if slugify(name) not in slugs else slugify(path)
        slugs.add(slug)
        conn.execute("INSERT INTO categories VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (cid, ids.get(parent), name, path, slug, path.count("/"), description))
        ids[path] = cid
    return ids


def _unique_name(base: str, values: list[str], taken: set[str], number: int) -> str:
    for name in [base, *(f"{base}, {v}" for v in values), *(f"{base} {s}" for s in NAME_SUFFIXES)]:
        if name not in taken:
            return name
    return f"{base} #{number}"


def _products(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random, cats: dict[str, int]) -> list[dict]:
    kinds = [data.values("product_types.tsv")[i % len(data.rows["product_types.tsv"])] for i in range(cfg.products)]
    rng.shuffle(kinds)
    brands = dict(data.values("brands.tsv"))
    attrs = {name: (label, values) for name, label, values in data.values("attributes.tsv")}
    adjectives, sentences = data.words("adjectives.txt"), data.words("product_sentences.txt")
    history_start = day_start(cfg.today) - timedelta(days=cfg.history_days)
    taken: set[str] = set()
    products = []
    for i, (category, noun, low, high, attr_names) in enumerate(kinds):
        top = category.split("/")[0]
        brand, adjective = rng.choice(brands[top]), rng.choice(adjectives)
        values = {a: rng.choice(attrs[a][1]) for a in attr_names}
        name = _unique_name(f"{brand} {adjective} {noun}", list(values.values()), taken, i + 1)
        taken.add(name)
        fill = {"noun": noun.lower(), "brand": brand, "adjective": adjective.lower()}
        description = " ".join(s.format(**fill) for s in rng.sample(sentences, 3))
        price = round(max(low, round(rng.uniform(low, high))) - 0.01, 2)
        stock = 0 if rng.random() < 0.07 else rng.randint(1, 250)
        status = "disabled" if rng.random() < 0.04 else "enabled"
        created = random_moment(rng, history_start - timedelta(days=365), history_start)
        p = {"id": i + 1, "sku": f"{_sku_prefix(top)}-{1001 + i}", "name": name, "category_id": cats[category],
             "brand": brand, "price": price, "stock": stock, "status": status, "description": description,
             "created": created, "noun": noun}
        conn.execute("INSERT INTO products VALUES (:id, :sku, :name, :category_id, :brand, :price, :stock, :status, "
                     ":description, :created_at)", p | {"created_at": stamp(created)})
        conn.executemany("INSERT INTO product_attributes VALUES (?, ?, ?, ?)",
                         [(p["id"], a, attrs[a][0], v) for a, v in values.items()])
        products.append(p)
    return products


def _customers(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random) -> list[dict]:
    firsts, lasts = data.words("first_names.txt"), data.words("last_names.txt")
    cities, streets, domains = data.values("cities.tsv"), data.words("streets.txt"), data.words("email_domains.txt")
    history_start = day_start(cfg.today) - timedelta(days=cfg.history_days)
    names: set[tuple[str, str]] = set()
    emails: set[str] = set()
    customers = []
    for cid in range(1, cfg.customers + 1):
        first, last = rng.choice(firsts), rng.choice(lasts)
        while (first, last) in names and len(names) < len(firsts) * len(lasts):
            first, last = rng.choice(firsts), rng.choice(lasts)
        names.add((first, last))
        email = f"{first.lower()}.{last.lower()}@{rng.choice(domains)}"
        while email in emails:
            email = f"{first.lower()}.{last.lower()}{rng.randint(10, 99)}@{rng.choice(domains)}"
        emails.add(email)
        city, state, zip_code, area = rng.choice(cities)
        created = random_moment(rng, history_start - timedelta(days=400), day_start(cfg.today) - timedelta(days=30))
        c = {"id": cid, "first_name": first, "last_name": last, "email": email, "password": DEFAULT_PASSWORD,
             "phone": f"({area}) 555-{rng.randint(1000, 9999)}", "street": f"{rng.randint(10, 9899)} {rng.choice(streets)}",
             "city": city, "state": state, "zip": zip_code, "created": created}
        conn.execute("INSERT INTO customers VALUES (:id, :first_name, :last_name, :email, :password, :phone, :street, "
                     ":city, :state, :zip, :created_at)", c | {"created_at": stamp(created)})
        customers.append(c)
    return customers


def _status_for_age(rng: random.Random, age_days: int) -> str:
    """Recent orders are still open; old ones are mostly complete, some canceled or refunded."""
    if age_days <= 3:
        return rng.choices(["pending", "processing"], [60, 40])[0]
    if age_days <= 14:
        return rng.choices(["processing", "complete", "on_hold", "canceled"], [45, 40, 10, 5])[0]
    return rng.choices(["complete", "canceled", "closed", "on_hold"], [79, 11, 8, 2])[0]


def _history(rng: random.Random, created, status: str, last_moment) -> list[tuple]:
    """(moment, status, comment) steps that lead an order from 'pending' to ``status``."""
    steps = [(created, "pending", "Order placed.")]
    path = {"pending": [], "processing": ["processing"], "on_hold": ["processing", "on_hold"],
            "complete": ["processing", "complete"], "canceled": ["canceled"],
            "closed": ["processing", "complete", "closed"]}[status]
    comments = {"processing": "Payment captured; the order is being packed.",
                "on_hold": "On hold: the shipping address could not be verified.",
                "complete": "Shipped with tracking number 1Z{track}.",
                "canceled": "Canceled at the customer's request.",
                "closed": "Refunded: the customer returned the items."}
    moment = created
    for s in path:
        moment = min(moment + timedelta(hours=rng.randint(2, 96)), last_moment)
        steps.append((moment, s, comments[s].format(track=rng.randint(10**9, 10**10 - 1))))
    return steps


def _orders(conn, cfg: SandboxConfig, rng: random.Random, customers: list[dict], products: list[dict]) -> None:
    end = day_start(cfg.today) - timedelta(seconds=1)
    history_start = day_start(cfg.today) - timedelta(days=cfg.history_days)
    weights = [rng.paretovariate(2.0) for _ in customers]
    weights[0] = 2 * sum(weights) / len(weights)  # the signed-in customer has a rich order history
    sellable = [p for p in products if p["status"] == "enabled"]
    popularity = [rng.paretovariate(1.5) for _ in sellable]
    drafts = []
    for _ in range(cfg.orders):
        customer = rng.choices(customers, weights)[0]
        created = random_moment(rng, max(history_start, customer["created"]), end)
        drafts.append((created, customer))
    drafts.sort(key=lambda d: (d[0], d[1]["id"]))
    for oid, (created, c) in enumerate(drafts, start=1):
        picked: dict[int, dict] = {}
        for _ in range(rng.choices([1, 2, 3, 4], [50, 30, 15, 5])[0]):
            p = rng.choices(sellable, popularity)[0]
            picked[p["id"]] = p
        lines = [(p, rng.choices([1, 2, 3], [80, 15, 5])[0]) for p in picked.values()]
        subtotal = round(sum(p["price"] * qty for p, qty in lines), 2)
        method = "express" if rng.random() < 0.2 else "standard"
        shipping = shipping_amount(method, subtotal)
        status = _status_for_age(rng, (end - created).days)
        steps = _history(rng, created, status, end)
        conn.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (oid, f"{oid:09d}", c["id"], status, stamp(created), stamp(steps[-1][0]), subtotal, method, shipping,
             round(subtotal + shipping, 2), f"{c['first_name']} {c['last_name']}", c["street"], c["city"], c["state"],
             c["zip"], c["phone"]))
        conn.executemany("INSERT INTO order_items (order_id, product_id, sku, name, price, qty) VALUES (?, ?, ?, ?, ?, ?)",
                         [(oid, p["id"], p["sku"], p["name"], p["price"], qty) for p, qty in lines])
        conn.executemany("INSERT INTO order_history (order_id, created_at, status, comment) VALUES (?, ?, ?, ?)",
                         [(oid, stamp(m), s, text) for m, s, text in steps])


def _reviews(conn, data: SeedData, cfg: SandboxConfig, rng: random.Random, customers, products) -> None:
    titles, sentences = data.by_first("review_titles.tsv"), data.by_first("review_sentences.tsv")
    firsts = data.words("first_names.txt")
    end = day_start(cfg.today) - timedelta(seconds=1)
    recent = end - timedelta(days=30)
    for p in products:
        quality = min(4.8, max(2.0, rng.gauss(3.9, 0.6)))
        for _ in range(rng.choices([0, 1, 2, 3, 4, 5, 6, 8, 12], [10, 14, 16, 16, 13, 10, 8, 8, 5])[0]):
            rating = min(5, max(1, round(rng.gauss(quality, 1.0))))
            sentiment = "positive" if rating >= 4 else "neutral" if rating == 3 else "negative"
            customer = rng.choice(customers) if rng.random() < 0.7 else None
            nickname = customer["first_name"] if customer else rng.choice(firsts)
            created = random_moment(rng, p["created"], end)
            if created >= recent:
                status = "pending" if rng.random() < 0.5 else "approved"
            else:
                status = "rejected" if rng.random() < 0.03 else "approved"
            pool = sentences[sentiment]
            body = " ".join(s.format(noun=p["noun"].lower()) for s in rng.sample(pool, min(len(pool), rng.randint(1, 3))))
            conn.execute("INSERT INTO reviews (product_id, customer_id, nickname, rating, title, body, status, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (p["id"], customer["id"] if customer else None, nickname, rating,
                          rng.choice(titles[sentiment]), body, status, stamp(created)))


def _baskets(conn, cfg: SandboxConfig, rng: random.Random, products: list[dict]) -> None:
    """The signed-in customer (id 1) starts with two products in the cart and three in the wishlist."""
    moment = stamp(day_start(cfg.today) - timedelta(days=1))
    in_stock = [p for p in products if p["status"] == "enabled" and p["stock"] > 0]
    picks = rng.sample(in_stock, 5)
    conn.executemany("INSERT INTO cart_items VALUES (1, ?, ?, ?)",
                     [(p["id"], qty, moment) for p, qty in zip(picks[:2], (1, 2))])
    conn.executemany("INSERT INTO wishlist_items VALUES (1, ?, ?)", [(p["id"], moment) for p in picks[2:]])
    conn.execute("INSERT INTO sessions VALUES ('shop', 1)")


def generate_shop(conn: sqlite3.Connection, data: SeedData, cfg: SandboxConfig, rng: random.Random) -> None:
    """Fill an empty shop database (``shop.sql``)."""
    cats = _categories(conn, data)
    products = _products(conn, data, cfg, rng, cats)
    customers = _customers(conn, data, cfg, rng)
    _orders(conn, cfg, rng, customers, products)
    _reviews(conn, data, cfg, rng, customers, products)
    _baskets(conn, cfg, rng, products)
