"""The sandbox sites without a browser: deterministic data, every main page renders, the forms change
the state they should, per-episode states stay apart, the control API's guards, and clear errors for
broken seed data, broken task files and unknown sites or tasks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
import statistics
import time

import pytest
from starlette.testclient import TestClient

from envpool.sandbox import admin, forum, shop
from envpool.sandbox.build import build_templates, digest
from envpool.sandbox.control import build_control
from envpool.sandbox.seed_data import DATA_DIR, SeedDataError, load_seed_data
from envpool.sandbox.process import COOKIE
from envpool.sandbox.states import StateError, StateStore, UnknownEpisode
from envpool.sandbox.task_specs import TaskFileError, load_task_specs, read_task_file
from reward.rule_config import parse_eval_config
from webrl.config import SandboxConfig

CFG = SandboxConfig()
EXAMPLES = Path(__file__).resolve().parent / "data" / "sandbox"  # example tasks with oracles
TOKEN = "test-token"


@pytest.fixture(scope="module")
def templates():
    return build_templates(CFG)


@pytest.fixture
def store(templates):
    s = StateStore(templates, max_episodes=8, ttl_s=3600)
    yield s
    s.close()


@pytest.fixture
def clients(store):
    """A TestClient per site, all on one store, working on episode 'ep' (its state created)."""
    store.create("ep")
    out = {}
    for name, module in (("shop", shop), ("admin", admin), ("forum", forum)):
        client = TestClient(module.build(store, CFG, {}).app())
        client.cookies.set(COOKIE, "ep")
        out[name] = client
    return out


def one(store: StateStore, site: str, sql: str, params=(), episode: str = "ep"):
    rows = store.query(episode, site, sql, list(params))["rows"]
    return rows[0][0] if rows else None


def notice(html: str) -> str:
    found = re.findall(r'role="status"[^>]*>([^<]*)<', html)
    return found[0] if found else ""


# ---- data ---------------------------------------------------------------------------------------
def test_data_is_deterministic_and_rich(templates):
    again = build_templates(CFG)
    assert {k: digest(v) for k, v in templates.items()} == {k: digest(v) for k, v in again.items()}
    other = build_templates(CFG.model_copy(update={"seed": 1}))
    assert digest(other["shop"]) != digest(templates["shop"]) and digest(other["forum"]) != digest(templates["forum"])
    shop_db, forum_db = templates["shop"], templates["forum"]
    count = lambda db, sql: db.execute(sql).fetchone()[0]  # noqa: E731
    assert count(shop_db, "SELECT COUNT(*) FROM products") == CFG.products
    assert count(shop_db, "SELECT COUNT(*) FROM categories") >= 20
    assert count(shop_db, "SELECT MAX(depth) FROM categories") == 2  # nested three deep
    assert count(shop_db, "SELECT COUNT(*) FROM customers") == CFG.customers
    assert count(shop_db, "SELECT COUNT(*) FROM orders") == CFG.orders
    assert count(shop_db, "SELECT COUNT(DISTINCT status) FROM orders") >= 5
    span = count(shop_db, "SELECT julianday(MAX(created_at)) - julianday(MIN(created_at)) FROM orders")
    assert span > 600  # about two years
    assert count(shop_db, "SELECT MAX(created_at) FROM orders") < CFG.today.isoformat()
    assert count(shop_db, "SELECT COUNT(*) FROM reviews") > 500
    assert count(shop_db, "SELECT COUNT(*) FROM reviews WHERE status = 'pending'") > 5
    assert count(shop_db, "SELECT COUNT(*) FROM orders WHERE customer_id = 1") >= 8
    assert count(forum_db, "SELECT COUNT(*) FROM forums") == 30
    assert count(forum_db, "SELECT COUNT(*) FROM posts") == CFG.posts
    assert count(forum_db, "SELECT COUNT(*) FROM comments WHERE parent_id IS NOT NULL") > 300  # nested
    assert count(forum_db, "SELECT COUNT(*) FROM users") == CFG.forum_users
    # order totals add up
    assert count(shop_db, "SELECT COUNT(*) FROM orders o WHERE abs(o.subtotal - (SELECT SUM(price * qty) FROM "
                          "order_items WHERE order_id = o.id)) > 0.005 OR abs(o.grand_total - o.subtotal - "
                          "o.shipping_amount) > 0.005") == 0


# ---- pages --------------------------------------------------------------------------------------
PAGES = {
    "shop": ["/", "/category/electronics", "/category/shirts?sort=price_desc", "/search?q=kettle", "/search?q=zzzz",
             "/product/EL-1002", "/cart", "/checkout", "/account", "/account/edit", "/account/orders",
             "/account/orders?page=2", "/account/wishlist", "/account/reviews", "/login"],
    "admin": ["/", "/orders", "/orders?status=complete&from=2024-01-01&to=2024-03-31", "/orders?q=000000010",
              "/orders/000000010", "/products", "/products?q=kettle&status=enabled&sort=price_desc",
              "/products/EL-1002", "/customers", "/customers?q=Pittsburgh", "/customers/1", "/reports/sales",
              "/reports/sales?from=2023-01-01&to=2023-12-31", "/reviews", "/reviews?status=all&page=2"],
    "forum": ["/", "/?sort=new&page=2", "/?sort=top", "/forums", "/forums?page=2", "/f/books", "/f/books?sort=top",
              "/submit", "/search?q=coffee", "/login"],
}


@pytest.mark.parametrize("site", list(PAGES))
def test_main_pages_render_with_titles_and_small_pages(clients, store, site):
    client = clients[site]
    if site == "forum":  # a post page, a reply page and a user page
        pid, name, cid = store.query("ep", "forum", "SELECT p.id, f.name, (SELECT MIN(id) FROM comments WHERE "
                                     "post_id = p.id) FROM posts p JOIN forums f ON f.id = p.forum_id WHERE "
                                     "EXISTS (SELECT 1 FROM comments WHERE post_id = p.id) LIMIT 1")["rows"][0]
        user = one(store, "forum", "SELECT username FROM users WHERE id = 1")
        extra = [f"/f/{name}/{pid}", f"/f/{name}/{pid}/comment/{cid}/reply", f"/user/{user}", f"/user/{user}?show=comments"]
    else:
        extra = []
    for url in PAGES[site] + extra:
        r = client.get(url)
        assert r.status_code == 200, (url, r.text[-500:])
        assert re.search(r"<title>[^<]+ - [^<]+</title>", r.text), url
        assert len(r.text) < 40_000, (url, len(r.text))  # the agent's observation budget is small
    assert client.get("/no/such/page").status_code == 404
    missing = {"shop": "/product/NOPE-1", "admin": "/orders/999999999", "forum": "/f/nosuchforum"}[site]
    r = client.get(missing)
    assert r.status_code == 404 and "no such" in r.text.lower()


def test_listings_paginate_and_sort(clients):
    shop_client = clients["shop"]
    first = shop_client.get("/category/electronics").text
    second = shop_client.get("/category/electronics?page=2").text
    names = lambda html: re.findall(r'<a href="/product/[^"]+">([^<]+)</a>', html)  # noqa: E731
    assert len(names(first)) == CFG.page_size and names(first) != names(second)
    assert "Next page" in first and "Previous page" in second
    cheap = shop_client.get("/category/electronics?sort=price_asc").text
    prices = [float(p.replace(",", "")) for p in re.findall(r"<td>\$([\d,.]+)</td>", cheap)]
    assert prices == sorted(prices)
    assert shop_client.get("/category/electronics?page=999").status_code == 200  # clamped to the last page
    top = clients["forum"].get("/?sort=top").text
    scores = [int(s) for s in re.findall(r"<span>(-?\d+) points</span>", top)]
    assert scores == sorted(scores, reverse=True) and len(scores) == CFG.page_size


# ---- shop forms ---------------------------------------------------------------------------------
def test_shop_cart_checkout_and_order_history(clients, store):
    c = clients["shop"]
    sku, stock = store.query("ep", "shop", "SELECT sku, stock FROM products WHERE status = 'enabled' AND stock > 5 "
                             "AND id NOT IN (SELECT product_id FROM cart_items) ORDER BY id LIMIT 1")["rows"][0]
    r = c.post("/cart/add", data={"sku": sku, "qty": "2"})
    assert r.status_code == 200 and r.url.path == "/cart" and "You added" in notice(r.text)
    assert one(store, "shop", "SELECT qty FROM cart_items WHERE customer_id = 1 AND product_id = "
                              "(SELECT id FROM products WHERE sku = ?)", [sku]) == 2
    r = c.post("/cart/add", data={"sku": sku, "qty": str(stock + 1)})
    assert "in stock" in notice(r.text)  # refused: more than the stock
    c.post("/cart/update", data={"sku": sku, "qty": "3", "action": "update"})
    assert one(store, "shop", "SELECT qty FROM cart_items i JOIN products p ON p.id = i.product_id WHERE p.sku = ?",
               [sku]) == 3
    lines = one(store, "shop", "SELECT COUNT(*) FROM cart_items WHERE customer_id = 1")
    bad = c.post("/checkout", data={"name": "", "street": "1 Main St", "city": "Pittsburgh", "state": "XX",
                                    "zip": "12", "phone": "1", "shipping": "standard"})
    assert bad.status_code == 400
    assert "Full name is required" in bad.text and "two-letter" in bad.text and "5 digits" in bad.text
    orders_before = one(store, "shop", "SELECT COUNT(*) FROM orders")
    r = c.post("/checkout", data={"name": "Pat Doe", "street": "1 Main St", "city": "Pittsburgh", "state": "PA",
                                  "zip": "15213", "phone": "(412) 555-0100", "shipping": "express"})
    number = re.search(r"order number is (\d+)", r.text).group(1)
    assert r.url.path == f"/account/orders/{number}" and "Pat Doe" in r.text and "Express Shipping" in r.text
    order = store.query("ep", "shop", "SELECT status, shipping_amount, grand_total - subtotal, ship_zip, "
                        "(SELECT COUNT(*) FROM order_items WHERE order_id = orders.id) FROM orders WHERE number = ?",
                        [number])["rows"][0]
    assert order == ["pending", 15.0, 15.0, "15213", lines]
    assert one(store, "shop", "SELECT COUNT(*) FROM orders") == orders_before + 1
    assert one(store, "shop", "SELECT COUNT(*) FROM cart_items WHERE customer_id = 1") == 0
    assert one(store, "shop", "SELECT stock FROM products WHERE sku = ?", [sku]) == stock - 3
    assert number in c.get("/account/orders").text  # newest first on the history's first page
    r = c.post(f"/account/orders/{number}/cancel")
    assert "You canceled" in notice(r.text)
    assert one(store, "shop", "SELECT status FROM orders WHERE number = ?", [number]) == "canceled"
    assert one(store, "shop", "SELECT stock FROM products WHERE sku = ?", [sku]) == stock  # back in stock


def test_shop_reviews_wishlist_account_and_login(clients, store):
    c = clients["shop"]
    r = c.post("/product/EL-1002/review", data={"rating": "4", "nickname": "Pat", "title": "Solid", "body": "Works."})
    assert "awaits" in notice(r.text) or "approves" in notice(r.text)
    assert one(store, "shop", "SELECT status FROM reviews WHERE title = 'Solid' AND customer_id = 1") == "pending"
    r = c.post("/product/EL-1002/review", data={"rating": "9", "nickname": "", "title": "x", "body": "y"})
    assert "not saved" in notice(r.text)
    c.post("/wishlist/add", data={"sku": "EL-1002"})
    assert "EL-1002" in c.get("/account/wishlist").text
    r = c.post("/account/edit", data={"first_name": "Pat", "last_name": "Doe", "email": "pat@example.com",
                                      "phone": "1", "street": "2 Elm St", "city": "Boston", "state": "MA", "zip": "02116"})
    assert r.url.path == "/account" and "pat@example.com" in r.text
    assert c.post("/account/edit", data={"first_name": ""}).status_code == 400
    c.post("/logout")
    r = c.get("/cart")
    assert r.url.path == "/login" and "sign in" in r.text.lower()
    assert c.post("/login", data={"email": "pat@example.com", "password": "wrong"}).status_code == 401
    r = c.post("/login?next=/cart", data={"email": "pat@example.com", "password": "Password123"})
    assert r.url.path == "/cart"


# ---- admin forms --------------------------------------------------------------------------------
def test_admin_edits_products_orders_and_reviews(clients, store):
    c = clients["admin"]
    r = c.post("/products/EL-1002", data={"name": "Renamed Charger", "price": "abc", "stock": "-1", "status": "on"})
    assert r.status_code == 400 and "positive number" in r.text and "whole number" in r.text
    r = c.post("/products/EL-1002", data={"name": "Renamed Charger", "price": "19.50", "stock": "7",
                                          "status": "disabled", "description": "d"})
    assert "You saved" in notice(r.text)
    assert store.query("ep", "shop", "SELECT name, price, stock, status FROM products WHERE sku = 'EL-1002'")["rows"] == [
        ["Renamed Charger", 19.5, 7, "disabled"]]
    assert clients["shop"].get("/product/EL-1002").status_code == 404  # disabled: gone from the shop
    number = one(store, "shop", "SELECT number FROM orders WHERE status = 'complete' LIMIT 1")
    r = c.post(f"/orders/{number}/status", data={"status": "pending", "comment": ""})
    assert "cannot become" in notice(r.text)
    c.post(f"/orders/{number}/status", data={"status": "closed", "comment": "Refund issued"})
    assert one(store, "shop", "SELECT status FROM orders WHERE number = ?", [number]) == "closed"
    assert one(store, "shop", "SELECT comment FROM order_history h JOIN orders o ON o.id = h.order_id WHERE "
                              "o.number = ? ORDER BY h.id DESC LIMIT 1", [number]) == "Refund issued"
    rid = one(store, "shop", "SELECT id FROM reviews WHERE status = 'pending' LIMIT 1")
    c.post(f"/reviews/{rid}/approve", data={"back": "/reviews"})
    assert one(store, "shop", "SELECT status FROM reviews WHERE id = ?", [rid]) == "approved"
    c.post(f"/reviews/{rid}/delete", data={"back": "/reviews"})
    assert one(store, "shop", "SELECT COUNT(*) FROM reviews WHERE id = ?", [rid]) == 0


def test_admin_filters_and_sales_report_match_the_database(clients, store):
    c = clients["admin"]
    r = c.get("/orders?status=canceled&from=2023-01-01&to=2023-12-31")
    expected = one(store, "shop", "SELECT COUNT(*) FROM orders WHERE status = 'canceled' AND created_at BETWEEN "
                                  "'2023-01-01' AND '2023-12-31 23:59:59'")
    assert f"of {expected} (page" in r.text
    assert "is not a date" in c.get("/orders?from=31/12/2023").text
    report = c.get("/reports/sales?from=2024-01-01&to=2024-03-31").text
    count, revenue = store.query("ep", "shop", "SELECT COUNT(*), ROUND(SUM(grand_total), 2) FROM orders WHERE status "
                                 "IN ('pending', 'processing', 'on_hold', 'complete') AND created_at BETWEEN "
                                 "'2024-01-01' AND '2024-03-31 23:59:59'")["rows"][0]
    assert f"<th>Orders</th><td>{count}</td>" in report and f"${revenue:,.2f}" in report
    best = one(store, "shop", "SELECT i.sku FROM order_items i JOIN orders o ON o.id = i.order_id WHERE o.status IN "
                              "('pending', 'processing', 'on_hold', 'complete') AND o.created_at BETWEEN '2024-01-01' "
                              "AND '2024-03-31 23:59:59' GROUP BY i.product_id ORDER BY SUM(i.qty) DESC, "
                              "SUM(i.qty * i.price) DESC, i.sku LIMIT 1")
    assert re.search(rf"<td>1</td><td><a href=\"/products/{best}\">", report)


# ---- forum forms --------------------------------------------------------------------------------
def test_forum_posts_votes_comments_and_subscriptions(clients, store):
    c = clients["forum"]
    assert c.post("/submit", data={"forum": "", "title": ""}).status_code == 400
    r = c.post("/submit", data={"forum": "books", "title": "A test post", "body": "Line one."})
    pid = int(re.search(r"/f/books/(\d+)", str(r.url)).group(1))
    assert "A test post" in r.text and "A test post" in c.get("/f/books?sort=new").text.split("</ol>")[0]
    r = c.post(f"/f/books/{pid}/edit", data={"title": "An edited post", "body": "Line two."})
    assert "An edited post" in r.text and "edited" in r.text
    assert one(store, "forum", "SELECT edited_at IS NOT NULL FROM posts WHERE id = ?", [pid]) == 1
    other = store.query("ep", "forum", "SELECT p.id, f.name, p.score FROM posts p JOIN forums f ON f.id = p.forum_id "
                        "WHERE p.user_id != 1 AND p.id NOT IN (SELECT target_id FROM votes WHERE user_id = 1 AND "
                        "kind = 'post') LIMIT 1")["rows"][0]
    assert c.get(f"/f/{other[1]}/{other[0]}/edit").status_code == 403
    vote = {"kind": "post", "id": str(other[0]), "direction": "up", "back": f"/f/{other[1]}/{other[0]}"}
    c.post("/vote", data=vote)
    assert one(store, "forum", "SELECT score FROM posts WHERE id = ?", [other[0]]) == other[2] + 1
    c.post("/vote", data=vote | {"direction": "down"})
    assert one(store, "forum", "SELECT score FROM posts WHERE id = ?", [other[0]]) == other[2] - 1
    c.post("/vote", data=vote | {"direction": "down"})  # the same vote again takes it back
    assert one(store, "forum", "SELECT score FROM posts WHERE id = ?", [other[0]]) == other[2]
    assert one(store, "forum", "SELECT COUNT(*) FROM votes WHERE user_id = 1 AND target_id = ? AND kind = 'post'",
               [other[0]]) == 0
    r = c.post(f"/f/books/{pid}/comment", data={"body": "First!"})
    cid = int(re.search(r"#comment-(\d+)", str(r.url)).group(1))
    c.post(f"/f/books/{pid}/comment", data={"body": "A reply", "parent": str(cid)})
    assert one(store, "forum", "SELECT parent_id FROM comments WHERE body = 'A reply'") == cid
    page = c.get(f"/f/books/{pid}").text
    assert re.search(r'id="comment-\d+">.*First!.*<ul>.*A reply', page, re.S)  # the reply nests under it
    subscribed = one(store, "forum", "SELECT COUNT(*) FROM subscriptions WHERE user_id = 1 AND forum_id = "
                                     "(SELECT id FROM forums WHERE name = 'jokes')")
    c.post("/f/jokes/unsubscribe" if subscribed else "/f/jokes/subscribe", data={})
    assert one(store, "forum", "SELECT COUNT(*) FROM subscriptions WHERE user_id = 1 AND forum_id = "
                               "(SELECT id FROM forums WHERE name = 'jokes')") == 1 - subscribed
    r = c.post(f"/f/books/{pid}/delete")
    assert r.url.path == "/f/books" and one(store, "forum", "SELECT COUNT(*) FROM posts WHERE id = ?", [pid]) == 0


# ---- states and the control API -----------------------------------------------------------------
def test_episode_states_are_isolated_quick_and_discarded(clients, store):
    store.create("other")
    clients["shop"].post("/cart/add", data={"sku": "EL-1002", "qty": "1"})
    clients["forum"].post("/submit", data={"forum": "books", "title": "Only in ep", "body": ""})
    cart = "SELECT COUNT(*) FROM cart_items i JOIN products p ON p.id = i.product_id WHERE p.sku = 'EL-1002'"
    post = "SELECT COUNT(*) FROM posts WHERE title = 'Only in ep'"
    assert one(store, "shop", cart) == 1 and one(store, "forum", post) == 1
    for episode in ("other", "browse"):
        assert one(store, "shop", cart, episode=episode) == 0 and one(store, "forum", post, episode=episode) == 0
    times = [store.create(f"e{i}") for i in range(6)]
    assert statistics.median(times) < 100, times
    assert store.discard("ep") and not store.discard("ep")
    r = clients["shop"].get("/")
    assert r.status_code == 410 and "discarded" in r.text
    with pytest.raises(UnknownEpisode):
        store.get("ep")
    with pytest.raises(StateError, match="limit"):
        for i in range(10):
            store.create(f"many{i}")
    with pytest.raises(StateError, match="bad episode id"):
        store.create("../etc")


def test_control_api_guards_its_token_and_refuses_writes(store):
    api = TestClient(build_control(store, TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert api.get("/health").json()["ok"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = api.post("/episodes/x1", headers=headers)
        assert r.status_code == 401 and "token" in r.json()["error"]
    assert api.post("/episodes/x1", headers=auth).json()["ms"] < 100
    assert api.get("/episodes", headers=auth).json() == {"episodes": ["x1"]}
    q = lambda sql, site="shop": api.post("/episodes/x1/query", headers=auth, json={"site": site, "sql": sql})  # noqa: E731
    r = q("SELECT COUNT(*) AS n FROM orders")
    assert r.status_code == 200 and r.json() == {"columns": ["n"], "rows": [[CFG.orders]], "truncated": False}
    assert q("WITH t AS (SELECT 1 AS x) SELECT x FROM t").json()["rows"] == [[1]]
    for sql in ("DELETE FROM orders", "UPDATE products SET price = 0", "INSERT INTO meta VALUES ('a', 'b')",
                "DROP TABLE orders", "PRAGMA query_only = 0", "ATTACH ':memory:' AS x", "CREATE TABLE t (x)",
                "BEGIN", "SELECT 1; DELETE FROM orders"):
        r = q(sql)
        assert r.status_code == 400, sql
    assert "read-only" in q("DELETE FROM orders").json()["error"]
    assert q("SELECT COUNT(*) FROM orders").json()["rows"] == [[CFG.orders]]  # nothing was deleted
    assert "no such table" in q("SELECT * FROM nope").json()["error"]
    r = q("SELECT 1", site="blog")
    assert r.status_code == 400 and "unknown site 'blog'" in r.json()["error"] and "shop, admin, forum" in r.json()["error"]
    r = api.post("/episodes/zz/query", headers=auth, json={"site": "shop", "sql": "SELECT 1"})
    assert r.status_code == 404 and "no state for episode 'zz'" in r.json()["error"]
    assert api.delete("/episodes/x1", headers=auth).json() == {"discarded": True}


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("file, line_no, bad, message", [
    ("product_types.tsv", 5, "Electronics/Speakers\tSmart Speaker\t39\n", "expected 5 tab-separated fields"),
    ("product_types.tsv", 3, "Electronics/Headphones\tWireless Earbuds\tcheap\t199\tcolor\n", "must be a whole number"),
    ("product_types.tsv", 4, "Electronics/Radios\tRadio\t10\t20\tcolor\n", "unknown category 'Electronics/Radios'"),
    ("product_types.tsv", 6, "Electronics/Speakers\tSoundbar\t79\t399\tcolor,,connectivity\n", "empty item"),
    ("categories.tsv", 3, "Electronics\tDuplicate.\n", "repeats line 2"),
    ("forums.tsv", 2, "Books Club\tBooks\tNovels.\tfantasy\n", "may hold only"),
    ("review_titles.tsv", 2, "angry\tBad\n", "sentiment must be one of"),
])
def test_broken_seed_data_names_the_file_and_line(tmp_path, file, line_no, bad, message):
    folder = tmp_path / "data"
    shutil.copytree(DATA_DIR, folder)
    lines = (folder / file).read_text().splitlines(keepends=True)
    lines[line_no - 1] = bad
    (folder / file).write_text("".join(lines))
    with pytest.raises(SeedDataError) as err:
        load_seed_data(folder)
    assert f"{folder / file}, line {line_no}:" in str(err.value) and message in str(err.value)


def test_missing_seed_file_and_folder_are_named(tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(DATA_DIR, folder)
    (folder / "streets.txt").unlink()
    with pytest.raises(SeedDataError, match="streets.txt is missing"):
        load_seed_data(folder)
    with pytest.raises(SeedDataError, match="does not exist"):
        load_seed_data(tmp_path / "nowhere")


def test_task_files_load_and_broken_lines_are_named(tmp_path):
    specs = load_task_specs(EXAMPLES, parse_eval_config)
    assert {s.task_id.split("/")[1].split("-")[0] for s in specs} == {"shop", "admin", "forum"}
    assert all(s.oracle and s.eval for s in specs) and {s.split for s in specs} == {"train", "test"}
    good = '{"task_id": "sandbox/shop-x-0", "intent": "Do x.", "start_url": "__SHOP__/", "eval": null}'
    cases = [
        ("{not json", "not valid JSON"),
        ('{"task_id": "sandbox/blog-x-0", "intent": "x", "start_url": "__SHOP__/"}', "must look like sandbox/<site>"),
        ('{"task_id": "sandbox/shop-x-1", "intent": "x", "start_url": "http://example.com/"}', "must start with __SHOP__"),
        ('{"task_id": "sandbox/shop-x-1", "intent": "x", "start_url": "__SHOP__/", "sites": ["blog"]}', "sites.0"),
        ('{"task_id": "sandbox/shop-x-1", "start_url": "__SHOP__/"}', "intent"),
    ]
    for bad, message in cases:
        path = tmp_path / "t.jsonl"
        path.write_text(good + "\n\n" + bad + "\n")
        with pytest.raises(TaskFileError) as err:
            read_task_file(path)
        assert f"task file {path}, line 3:" in str(err.value) and message in str(err.value), str(err.value)
    path.write_text(good + "\n" + good.replace("x-0", "x-1").replace("null", '{"eval_types": ["magic"]}') + "\n")
    with pytest.raises(TaskFileError, match=r"line 2: task sandbox/shop-x-1: .*unknown eval type 'magic'"):
        read_task_file(path, parse_eval_config)
    (tmp_path / "t.jsonl").write_text(good + "\n")
    (tmp_path / "u.jsonl").write_text(good + "\n")
    with pytest.raises(TaskFileError, match="repeats t.jsonl:1"):
        load_task_specs(tmp_path)
    with pytest.raises(TaskFileError, match="does not exist"):
        load_task_specs(tmp_path / "nowhere")


def test_unknown_sandbox_task_is_refused_with_suggestions(cfg):
    from envpool.suites import Suites, UnknownTask

    cfg.env.sandbox.tasks_dir = str(EXAMPLES)
    suites = Suites(cfg.env)
    ids = [t.id for t in suites.all_tasks() if t.suite == "sandbox"]
    assert "sandbox/shop-cart-add-0" in ids
    with pytest.raises(UnknownTask, match="did you mean sandbox/shop-cart-add-0"):
        suites.resolve("sandbox/shop-cart-add-9")
    assert [t.id for t in suites.select("sandbox", split="test")] == [
        s.task_id for s in load_task_specs(EXAMPLES) if s.split == "test"]
    assert suites.by_name["sandbox"]._server is None  # listing tasks starts no server
    suites.close()


def test_building_templates_is_quick():
    t0 = time.perf_counter()
    build_templates(CFG)
    assert time.perf_counter() - t0 < 5  # well under a second on a laptop; generous for a busy CI core
