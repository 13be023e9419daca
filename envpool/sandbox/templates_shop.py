"""Task templates on the shop (Maple Market): product facts, categories, search, the signed-in
customer's orders, cart, wish list, reviews, checkout and account. Customer 1 (Hannah Mitchell) is
signed in when an episode starts. See :mod:`envpool.sandbox.task_templates` for the vocabulary.
"""

from __future__ import annotations

from envpool.sandbox.task_plan import Target, answer, click, search, select, type_
from envpool.sandbox.task_templates import (DONE, INFO, NAV, STATE, Draft, SiteData, Template, all_of, amount,
                                            includes, money, registry, sql_text, state, url_is)
from envpool.sandbox.shop_rules import DEFAULT_PASSWORD

TEMPLATES: list[Template] = []
register = registry(TEMPLATES)

ENABLED = ("SELECT p.*, c.name AS category, c.path, c.slug, c.depth FROM products p JOIN categories c "
           "ON c.id = p.category_id WHERE p.status = 'enabled'")
SORT_LABELS = {"price_asc": "Price: low to high", "price_desc": "Price: high to low", "rating": "Top rated",
               "newest": "Newest", "name": "Name"}


# ---- helpers: how to get to a page --------------------------------------------------
def open_product(p) -> list:
    """From any shop page: search the product's name, open its page."""
    return [search(p["name"], name="q"), click(href=f"/product/{p['sku']}")]


def to_category(data: SiteData, slug: str) -> list:
    """From the home page to a category's listing (the home page links the top two levels)."""
    cat = data.one("shop", "SELECT * FROM categories WHERE slug = ?", (slug,))
    if cat["depth"] == 0:
        return [click(href=f"/category/{slug}", nth=0)]  # the menu's link, not the list's
    if cat["depth"] == 1:
        return [click(href=f"/category/{slug}")]
    parent = data.one("shop", "SELECT slug FROM categories WHERE id = ?", (cat["parent_id"],))["slug"]
    return [click(href=f"/category/{parent}"), click(href=f"/category/{slug}")]


def my_orders(data: SiteData) -> list:
    """Customer 1's orders, newest first (the order of the account's order list)."""
    return data.rows("shop", "SELECT * FROM orders WHERE customer_id = 1 ORDER BY created_at DESC, id DESC")


def to_order(data: SiteData, number: str) -> list:
    """From any shop page to one of customer 1's orders: My Account, the list's pages, the order."""
    index = [o["number"] for o in my_orders(data)].index(number)
    if index < 5:  # the account page shows the five newest
        return [click(href="/account"), click(href=f"/account/orders/{number}")]
    pages = index // data.cfg.page_size
    return ([click(href="/account"), click(text="View all orders")] + [click(text="Next page")] * pages
            + [click(href=f"/account/orders/{number}")])


def in_cart(data: SiteData) -> list:
    return data.rows("shop", "SELECT p.*, i.qty FROM cart_items i JOIN products p ON p.id = i.product_id "
                     "WHERE i.customer_id = 1 ORDER BY i.added_at, p.id")


def cart_qty_sql(sku: str) -> str:
    return (f"SELECT COALESCE(SUM(i.qty), 0) FROM cart_items i JOIN products p ON p.id = i.product_id "
            f"WHERE i.customer_id = 1 AND p.sku = {sql_text(sku)}")


def cart_summary_sql() -> str:
    """The cart as 'SKUxQTY,...' in SKU order."""
    return ("SELECT group_concat(line, ',') FROM (SELECT p.sku || 'x' || i.qty AS line FROM cart_items i "
            "JOIN products p ON p.id = i.product_id WHERE i.customer_id = 1 ORDER BY p.sku)")


def new_order_sql(max_id: int, columns: str) -> str:
    """``columns`` of customer 1's orders placed during the episode (ids above the generated ones);
    ``items`` is the order's lines as 'SKUxQTY,...' in SKU order."""
    items = ("(SELECT group_concat(line, ',') FROM (SELECT sku || 'x' || qty AS line FROM order_items "
             "WHERE order_id = o.id ORDER BY sku))")
    return f"SELECT {columns.replace('items', items)} FROM orders o WHERE o.customer_id = 1 AND o.id > {max_id}"


def lines_text(rows) -> str:
    return ",".join(f"{r['sku']}x{r['qty']}" for r in sorted(rows, key=lambda r: r["sku"]))


def checkout_plan(method: str) -> list:
    """From the cart page: checkout, the shipping method, place the order."""
    radio = [click(name="shipping", nth=1)] if method == "express" else []
    return [click(text="Proceed to Checkout"), *radio, click(text="Place Order")]


# ---- information-seeking --------------------------------------------------------------------------
@register("shop-product-price", "What is the price of the {{product}}?", INFO, count=5)
def product_price(data: SiteData):
    first = data.rows("shop", f"{ENABLED} AND p.name = 'Hearthstone Everyday Electric Kettle'")  # the first example task
    for p in first + data.sample("shop", f"{ENABLED} AND p.name != 'Hearthstone Everyday Electric Kettle'", 4,
                                 "shop-product-price"):
        yield Draft({"product": p["name"]}, [*open_product(p), answer(money(p["price"]))], includes(amount(p["price"])))


def _page_one_of_category(data: SiteData, p) -> bool:
    rank = data.value("shop", f"SELECT COUNT(*) FROM ({ENABLED}) WHERE slug = ? AND (name < ? OR (name = ? AND id < ?))",
                      (p["slug"], p["name"], p["name"], p["id"]))
    return rank < data.cfg.page_size


@register("shop-product-attribute", "What is the {{attribute}} of the {{product}}?", INFO)
def product_attribute(data: SiteData):
    rows = data.sample("shop", f"SELECT x.*, a.label, a.value FROM ({ENABLED}) x JOIN product_attributes a "
                       "ON a.product_id = x.id ORDER BY x.id, a.name", 40, "shop-product-attribute")
    seen = set()
    for p in rows:
        if p["id"] in seen or not _page_one_of_category(data, p):
            continue
        seen.add(p["id"])
        plan = [*to_category(data, p["slug"]), click(href=f"/product/{p['sku']}"), answer(p["value"])]
        yield Draft({"attribute": p["label"].lower(), "product": p["name"]}, plan, includes(p["value"]))


def _categories(data: SiteData, key: str):
    return data.shuffled(data.rows("shop", "SELECT * FROM categories ORDER BY id"), key)


def _listing(data: SiteData, cat, order: str) -> list:
    """The enabled products of a category and its subcategories in the listing's ``order``."""
    return data.rows("shop", f"SELECT x.*, (SELECT ROUND(AVG(rating), 1) FROM reviews r WHERE r.product_id = x.id "
                     "AND r.status = 'approved') AS rating, (SELECT COUNT(*) FROM reviews r WHERE r.product_id = x.id "
                     f"AND r.status = 'approved') AS review_count FROM ({ENABLED}) x WHERE x.path = ? OR x.path LIKE ? || '/%' "
                     f"ORDER BY {order}, x.id", (cat["path"], cat["path"]))


@register("shop-category-cheapest", "What is the cheapest product in the {{category}} category, and what does it cost?",
          INFO)
def category_cheapest(data: SiteData):
    for cat in _categories(data, "shop-category-cheapest"):
        items = _listing(data, cat, "x.price ASC")
        if len(items) < 2 or items[0]["price"] == items[1]["price"]:
            continue
        p = items[0]
        plan = [*to_category(data, cat["slug"]), select(SORT_LABELS["price_asc"], name="sort"), click(text="Apply"),
                answer(f"{p['name']}, {money(p['price'])}")]
        yield Draft({"category": cat["name"]}, plan, includes(p["name"], amount(p["price"])))


@register("shop-category-count", "How many products does the shop list in the {{category}} category?", INFO)
def category_count(data: SiteData):
    for cat in _categories(data, "shop-category-count"):
        n = len(_listing(data, cat, "x.name"))
        yield Draft({"category": cat["name"]}, [*to_category(data, cat["slug"]), answer(str(n))], includes(str(n)))


@register("shop-top-rated", "Which product in the {{category}} category has the best customer rating?", INFO, count=3)
def top_rated(data: SiteData):
    for cat in _categories(data, "shop-top-rated"):
        items = _listing(data, cat, "rating IS NULL, rating DESC, review_count DESC")
        if len(items) < 2 or (items[0]["rating"], items[0]["review_count"]) == (items[1]["rating"], items[1]["review_count"]):
            continue
        plan = [*to_category(data, cat["slug"]), select(SORT_LABELS["rating"], name="sort"), click(text="Apply"),
                answer(items[0]["name"])]
        yield Draft({"category": cat["name"]}, plan, includes(items[0]["name"]))


def _search_count(data: SiteData, query: str) -> int:
    """How many products the shop's search finds for ``query`` (every word in name, brand, SKU or category)."""
    words = query.split()
    where = " AND ".join(["(name LIKE ? OR brand LIKE ? OR sku LIKE ? OR path LIKE ?)"] * len(words))
    return data.value("shop", f"SELECT COUNT(*) FROM ({ENABLED}) WHERE {where}",
                      tuple(f"%{w}%" for w in words for _ in range(4)))


@register("shop-search-count", "How many products does a search for '{{query}}' find in the shop?", INFO,
          held_out=True)
def search_count(data: SiteData):
    names = [r["name"] for r in data.rows("shop", f"{ENABLED} ORDER BY p.id")]
    nouns = sorted({n.split()[-1].lower() for n in names if "," not in n and n.split()[-1].isalpha()})
    brands = [r["brand"] for r in data.rows("shop", "SELECT DISTINCT brand FROM products ORDER BY brand")]
    queries = data.shuffled(nouns, "shop-search-count/nouns")[:2] + data.shuffled(brands, "shop-search-count/brands")[:2]
    for query in queries:
        n = _search_count(data, query)
        if n:
            yield Draft({"query": query}, [search(query, name="q"), answer(str(n))], includes(str(n)))


@register("shop-review-latest", "What is the title of the most recent review of the {{product}}?", INFO)
def review_latest(data: SiteData):
    rows = data.sample("shop", f"SELECT x.*, (SELECT title FROM reviews r WHERE r.product_id = x.id AND r.status = "
                       "'approved' ORDER BY created_at DESC, id DESC LIMIT 1) AS latest FROM "
                       f"({ENABLED}) x WHERE latest IS NOT NULL", 4, "shop-review-latest")
    for p in rows:
        yield Draft({"product": p["name"]}, [*open_product(p), answer(p["latest"])], includes(p["latest"]))


@register("shop-order-total", "What was the grand total of my order #{{number}}?", INFO)
def order_total(data: SiteData):
    orders = my_orders(data)
    for o in data.shuffled(orders, "shop-order-total"):
        plan = [*to_order(data, o["number"]), answer(money(o["grand_total"]))]
        yield Draft({"number": o["number"]}, plan, includes(amount(o["grand_total"])))


@register("shop-order-items", "Which products did I buy in my order of {{date}}?", INFO, count=3)
def order_items(data: SiteData):
    orders = my_orders(data)
    days = [o["created_at"][:10] for o in orders]
    for o in data.shuffled(orders, "shop-order-items"):
        day = o["created_at"][:10]
        if days.count(day) > 1:
            continue
        names = [r["name"] for r in data.rows("shop", "SELECT name FROM order_items WHERE order_id = ? ORDER BY id", (o["id"],))]
        yield Draft({"date": day}, [*to_order(data, o["number"]), answer("; ".join(names))], includes(*names))


@register("shop-orders-in-year", "How many orders did I place in {{year}}?", INFO, count=3)
def orders_in_year(data: SiteData):
    orders = my_orders(data)
    for year in sorted({o["created_at"][:4] for o in orders}, reverse=True):
        last = max(i for i, o in enumerate(orders) if o["created_at"].startswith(year))
        n = sum(o["created_at"].startswith(year) for o in orders)
        plan = ([click(href="/account"), click(text="View all orders")]
                + [click(text="Next page")] * (last // data.cfg.page_size) + [answer(str(n))])
        yield Draft({"year": year}, plan, includes(str(n)))


@register("shop-login-last-order", "Sign out, sign in as {{email}} (password {{password}}) and tell me the grand "
          "total of that customer's most recent order.", INFO, held_out=True)
def login_last_order(data: SiteData):
    rows = data.sample("shop", "SELECT c.*, (SELECT grand_total FROM orders o WHERE o.customer_id = c.id "
                       "ORDER BY created_at DESC, id DESC LIMIT 1) AS last_total FROM customers c "
                       "WHERE c.id > 1 AND last_total IS NOT NULL", 4, "shop-login-last-order")
    for c in rows:
        plan = [click(text="Sign Out"), click(text="Sign In"), type_(c["email"], name="email"),
                type_(DEFAULT_PASSWORD, name="password"), click(text="Sign In", tag="button"),
                answer(money(c["last_total"]))]
        yield Draft({"email": c["email"], "password": DEFAULT_PASSWORD}, plan, includes(amount(c["last_total"])))


@register("shop-sorted-category", "Show me the products of the {{category}} category sorted by {{order}}.", NAV,
          count=3)
def sorted_category(data: SiteData):
    orders = [("price_desc", "price, highest first"), ("price_asc", "price, lowest first"), ("newest", "newest first"),
              ("rating", "customer rating")]
    for i, cat in enumerate(_categories(data, "shop-sorted-category")[:3]):
        key, words = orders[i % len(orders)]
        plan = [*to_category(data, cat["slug"]), select(SORT_LABELS[key], name="sort"), click(text="Apply"), answer(DONE)]
        yield Draft({"category": cat["name"], "order": words}, plan, url_is(f"__SHOP__/category/{cat['slug']}?sort={key}"))


# ---- state-changing: cart and wish list -----------------------------------------------------------
def _buyable(data: SiteData, key: str, k: int = 6):
    """Enabled products in stock (at least 5) that are neither in the cart nor in the wish list."""
    return data.sample("shop", f"{ENABLED} AND p.stock >= 5 AND p.id NOT IN (SELECT product_id FROM cart_items) "
                       "AND p.id NOT IN (SELECT product_id FROM wishlist_items)", k, key)


@register("shop-cart-add", "Add {{qty}} {{product}} to my shopping cart.", STATE, count=5)
def cart_add(data: SiteData):
    first = data.rows("shop", f"{ENABLED} AND p.name = 'Summitcraft Sport Yoga Mat'")  # the first example task
    rest = [p for p in _buyable(data, "shop-cart-add") if p["name"] != "Summitcraft Sport Yoga Mat"]
    for i, p in enumerate(first + rest):
        qty = (2, 1, 3)[i % 3]
        plan = [*open_product(p), type_(str(qty), name="qty"), click(text="Add to Cart", tag="button"), answer(DONE)]
        yield Draft({"qty": qty, "product": p["name"]}, plan, state("shop", cart_qty_sql(p["sku"]), exact=str(qty)))


@register("shop-cart-update", "Change the quantity of {{product}} in my cart to {{qty}}.", STATE, count=3)
def cart_update(data: SiteData):
    cart = in_cart(data)
    for i, qty in enumerate((3, 4, 5)):
        p = cart[i % len(cart)]
        row = Target(href=f"/product/{p['sku']}")
        plan = [click(href="/cart"), type_(str(qty), name="qty", after=row), click(text="Update", after=row), answer(DONE)]
        yield Draft({"product": p["name"], "qty": qty}, plan, state("shop", cart_qty_sql(p["sku"]), exact=str(qty)))


@register("shop-cart-remove", "Remove the {{product}} from my shopping cart.", STATE, count=2)
def cart_remove(data: SiteData):
    cart = in_cart(data)
    for p in cart:
        rest = [c for c in cart if c["sku"] != p["sku"]]
        plan = [click(href="/cart"), click(text="Remove", after=Target(href=f"/product/{p['sku']}")), answer(DONE)]
        checks = [state("shop", cart_qty_sql(p["sku"]), exact="0")]
        checks += [state("shop", cart_qty_sql(c["sku"]), exact=str(c["qty"])) for c in rest]  # the rest stays
        yield Draft({"product": p["name"]}, plan, all_of(*checks))


def wishlist_sql(sku: str) -> str:
    return (f"SELECT COUNT(*) FROM wishlist_items w JOIN products p ON p.id = w.product_id "
            f"WHERE w.customer_id = 1 AND p.sku = {sql_text(sku)}")


@register("shop-wishlist-add", "Add the {{product}} to my wish list.", STATE)
def wishlist_add(data: SiteData):
    for p in _buyable(data, "shop-wishlist-add"):
        plan = [*open_product(p), click(text="Add to Wish List"), answer(DONE)]
        yield Draft({"product": p["name"]}, plan, state("shop", wishlist_sql(p["sku"]), exact="1"))


@register("shop-wishlist-to-cart", "Move the {{product}} from my wish list to my shopping cart.", STATE, count=3)
def wishlist_to_cart(data: SiteData):
    wished = data.rows("shop", "SELECT p.* FROM wishlist_items w JOIN products p ON p.id = w.product_id "
                       "WHERE w.customer_id = 1 AND p.stock > 0 AND p.status = 'enabled' ORDER BY w.added_at, p.id")
    for p in wished:
        row = Target(href=f"/product/{p['sku']}")
        plan = [click(href="/account/wishlist"), click(text="Add to Cart", after=row), click(href="/account/wishlist"),
                click(text="Remove", after=row), answer(DONE)]
        yield Draft({"product": p["name"]}, plan, all_of(state("shop", cart_qty_sql(p["sku"]), exact="1"),
                                                         state("shop", wishlist_sql(p["sku"]), exact="0")))


# ---- state-changing: reviews, orders, account -----------------------------------------------------
REVIEWS = [
    (5, "Worth every penny", "Sturdy, well made and exactly as described."),
    (2, "Not what I expected", "It stopped working properly after two weeks."),
    (4, "Solid choice", "Good quality for the price, shipping was quick."),
    (3, "It is fine", "Does the job, nothing more and nothing less."),
    (1, "Would not buy again", "Arrived scratched and customer service never answered."),
]


@register("shop-review-write", "Write a {{rating}}-star review of the {{product}} with the summary '{{title}}' and "
          "the text '{{body}}'.", STATE)
def review_write(data: SiteData):
    for p, (rating, title, body) in zip(_buyable(data, "shop-review-write"), REVIEWS):
        stars = f"{rating} star" + ("s" if rating > 1 else "")
        plan = [*open_product(p), select(stars, name="rating"), type_(title, name="title"), type_(body, name="body"),
                click(text="Submit Review"), answer(DONE)]
        sql = (f"SELECT r.rating, r.title, r.body, r.status FROM reviews r JOIN products p ON p.id = r.product_id "
               f"WHERE p.sku = {sql_text(p['sku'])} AND r.customer_id = 1")
        yield Draft({"rating": rating, "product": p["name"], "title": title, "body": body}, plan,
                    state("shop", sql, exact=f"{rating}\t{title}\t{body}\tpending"))


@register("shop-checkout", "Place an order for everything in my shopping cart with {{method}} shipping.", STATE,
          count=2)
def checkout(data: SiteData):
    max_id, cart = data.value("shop", "SELECT MAX(id) FROM orders"), lines_text(in_cart(data))
    for method in ("express", "standard"):
        plan = [click(href="/cart"), *checkout_plan(method), answer(DONE)]
        yield Draft({"method": method}, plan,
                    state("shop", new_order_sql(max_id, "shipping_method, items, status"), exact=f"{method}\t{cart}\tpending"))


@register("shop-checkout-address", "Check out my shopping cart with {{method}} shipping to {{name}}, {{street}}, "
          "{{city}}, {{state}} {{zip}}.", STATE, count=3)
def checkout_address(data: SiteData):
    max_id, cart = data.value("shop", "SELECT MAX(id) FROM orders"), lines_text(in_cart(data))
    people = data.sample("shop", "SELECT * FROM customers WHERE id > 1 AND state != 'MN'", 3, "shop-checkout-address")
    for i, c in enumerate(people):
        method = ("standard", "express")[i % 2]
        name = f"{c['first_name']} {c['last_name']}"
        plan = [click(href="/cart"), click(text="Proceed to Checkout"), type_(name, name="name"),
                type_(c["street"], name="street"), type_(c["city"], name="city"), select(c["state"], name="state"),
                type_(c["zip"], name="zip"), *checkout_plan(method)[1:], answer(DONE)]
        values = {"method": method, "name": name, "street": c["street"], "city": c["city"], "state": c["state"],
                  "zip": c["zip"]}
        cols = "shipping_method, ship_name, ship_street, ship_city, ship_state, ship_zip, items"
        want = "\t".join([method, name, c["street"], c["city"], c["state"], c["zip"], cart])
        yield Draft(values, plan, state("shop", new_order_sql(max_id, cols), exact=want))


@register("shop-buy-only", "Buy {{qty}} {{product}} with {{method}} shipping, and nothing else: take the other "
          "items out of my cart first.", STATE, count=3, held_out=True)
def buy_only(data: SiteData):
    max_id, cart = data.value("shop", "SELECT MAX(id) FROM orders"), in_cart(data)
    for i, p in enumerate(_buyable(data, "shop-buy-only")[:3]):
        qty, method = 1 + i % 2, ("standard", "express")[i % 2]
        plan = [click(href="/cart")]
        plan += [click(text="Remove", after=Target(href=f"/product/{c['sku']}")) for c in cart]
        plan += [*open_product(p), type_(str(qty), name="qty"), click(text="Add to Cart", tag="button"),
                 *checkout_plan(method), answer(DONE)]
        yield Draft({"qty": qty, "product": p["name"], "method": method}, plan,
                    state("shop", new_order_sql(max_id, "shipping_method, items"), exact=f"{method}\t{p['sku']}x{qty}"))


@register("shop-order-cancel", "Order everything in my shopping cart with {{method}} shipping, then cancel that "
          "order.", STATE, count=2)
def order_cancel(data: SiteData):
    max_id, cart = data.value("shop", "SELECT MAX(id) FROM orders"), lines_text(in_cart(data))
    for method in ("standard", "express"):
        plan = [click(href="/cart"), *checkout_plan(method), click(text="Cancel Order"), answer(DONE)]
        yield Draft({"method": method}, plan,
                    state("shop", new_order_sql(max_id, "shipping_method, items, status"), exact=f"{method}\t{cart}\tcanceled"))


@register("shop-reorder", "Put everything from my order #{{number}} back into my shopping cart.", STATE, count=3)
def reorder(data: SiteData):
    have = {c["sku"]: c["qty"] for c in in_cart(data)}
    for o in data.shuffled(my_orders(data), "shop-reorder"):
        items = data.rows("shop", "SELECT i.sku, i.qty, p.status, p.stock FROM order_items i JOIN products p "
                          "ON p.id = i.product_id WHERE i.order_id = ?", (o["id"],))
        if any(i["status"] != "enabled" or i["stock"] <= 0 for i in items):
            continue
        after = dict(have)
        for i in items:
            after[i["sku"]] = after.get(i["sku"], 0) + i["qty"]
        want = ",".join(f"{sku}x{qty}" for sku, qty in sorted(after.items()))
        plan = [*to_order(data, o["number"]), click(text="Reorder"), answer(DONE)]
        yield Draft({"number": o["number"]}, plan, state("shop", cart_summary_sql(), exact=want))


@register("shop-account-phone", "Change the phone number of my account to {{phone}}.", STATE, count=3)
def account_phone(data: SiteData):
    for phone in ("(612) 555-0134", "(651) 555-7788", "(763) 555-2046"):
        plan = [click(href="/account"), click(text="Edit Account Information"), type_(phone, name="phone"),
                click(text="Save"), answer(DONE)]
        yield Draft({"phone": phone}, plan, state("shop", "SELECT phone FROM customers WHERE id = 1", exact=phone))
