"""The shop (modelled on WebArena's storefront): categories, search, products with reviews, cart,
checkout, account with order history, wishlist and reviews. Customer 1 is signed in at start.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

from envpool.sandbox.shop_rules import CANCELLABLE, SHIPPING_METHODS, US_STATES, shipping_amount
from envpool.sandbox.states import StateStore
from envpool.sandbox.web import NotFound, Page, Site
from webrl.config import SandboxConfig

SORTS = {
    "name": ("Name", "p.name ASC"),
    "price_asc": ("Price: low to high", "p.price ASC"),
    "price_desc": ("Price: high to low", "p.price DESC"),
    "rating": ("Top rated", "rating IS NULL, rating DESC, review_count DESC"),
    "newest": ("Newest", "p.created_at DESC"),
}

SEARCH_SORTS = {"relevance": ("Relevance", None), **SORTS}

PRODUCT_COLUMNS = """p.*, c.name AS category_name, c.slug AS category_slug, c.path AS category_path,
    (SELECT ROUND(AVG(rating), 1) FROM reviews r WHERE r.product_id = p.id AND r.status = 'approved') AS rating,
    (SELECT COUNT(*) FROM reviews r WHERE r.product_id = p.id AND r.status = 'approved') AS review_count"""


class Shop(Site):
    def globals(self, page: Page) -> dict:
        customer = signed_in(page)
        cart = page.db.execute("SELECT COALESCE(SUM(qty), 0) FROM cart_items WHERE customer_id = ?",
                               (customer["id"] if customer else 0,)).fetchone()[0]
        tops = page.db.execute("SELECT name, slug FROM categories WHERE parent_id IS NULL ORDER BY id").fetchall()
        return super().globals(page) | {"customer": customer, "cart_count": cart, "top_categories": tops}


def signed_in(page: Page):
    """The signed-in customer's row, or None."""
    return page.db.execute("SELECT c.* FROM sessions s JOIN customers c ON c.id = s.user_id WHERE s.site = 'shop'").fetchone()


def need_login(page: Page):
    """(customer, None) when someone is signed in, else (None, a redirect to the sign-in page that
    comes back to this page, or for a form to the page the form was on)."""
    customer = signed_in(page)
    if customer is None:
        page.notice("Please sign in first.")
        back = page.request.url.path
        if page.request.method != "GET":
            referer = urlsplit(page.request.headers.get("referer", ""))
            back = referer.path if referer.netloc == page.request.url.netloc and referer.path else "/"
        return None, page.redirect(f"/login?next={quote(back)}")
    return customer, None


def category_trail(page: Page, path: str):
    """The category at ``path`` and its ancestors, top-level first (breadcrumbs)."""
    return page.db.execute("SELECT name, slug FROM categories WHERE path = ? OR ? LIKE path || '/%' ORDER BY depth",
                           (path, path)).fetchall()


def product_listing(page: Page, where: str, params: tuple, sort: str, relevance: tuple[str, tuple] | None = None):
    """A page of enabled products matching ``where``; ``relevance`` = (ORDER BY expression, its params)."""
    if sort == "relevance" and relevance:
        order, params = f"{relevance[0]} DESC, p.name ASC", params + relevance[1]
    else:
        order = SORTS.get(sort, SORTS["name"])[1]
    return page.paginate(f"SELECT {PRODUCT_COLUMNS} FROM products p JOIN categories c ON c.id = p.category_id "
                         f"WHERE p.status = 'enabled' AND ({where}) ORDER BY {order}, p.id", params)


def enabled_product(page: Page, sku: str):
    return page.one(f"SELECT {PRODUCT_COLUMNS} FROM products p JOIN categories c ON c.id = p.category_id "
                    "WHERE p.sku = ? AND p.status = 'enabled'", (sku,), "product")


def build(store: StateStore, cfg: SandboxConfig, urls: dict[str, str]) -> Shop:
    site = Shop("shop", "Maple Market", store, cfg, urls)

    @site.route("/")
    async def home(page: Page):
        cats = page.db.execute("SELECT * FROM categories ORDER BY id").fetchall()
        popular = page.db.execute(
            f"SELECT {PRODUCT_COLUMNS} FROM products p JOIN categories c ON c.id = p.category_id "
            "WHERE p.status = 'enabled' AND p.id IN (SELECT product_id FROM order_items GROUP BY product_id "
            "ORDER BY SUM(qty) DESC, product_id LIMIT 8) ORDER BY p.name").fetchall()
        return page.render("home.html", title="Home", categories=cats, popular=popular)

    @site.route("/category/{slug}")
    async def category(page: Page):
        cat = page.one("SELECT * FROM categories WHERE slug = ?", (page.request.path_params["slug"],), "category")
        crumbs = category_trail(page, cat["path"])
        children = page.db.execute("SELECT * FROM categories WHERE parent_id = ? ORDER BY id", (cat["id"],)).fetchall()
        sort = page.arg("sort", "name")
        items = product_listing(page, "c.path = ? OR c.path LIKE ? || '/%'", (cat["path"], cat["path"]), sort)
        return page.render("listing.html", title=cat["name"], heading=cat["name"], category=cat, crumbs=crumbs,
                           children=children, pager=items, sort=sort, sorts=SORTS, query="")

    @site.route("/search")
    async def search(page: Page):
        q, sort = page.arg("q"), page.arg("sort", "relevance")
        words = q.split()[:8]
        where = " AND ".join(["(p.name LIKE ? OR p.brand LIKE ? OR p.sku LIKE ? OR c.path LIKE ?)"] * len(words)) or "0"
        params = tuple(f"%{w}%" for w in words for _ in range(4))
        # relevance: the whole query in the name counts most, then each word found in the name
        score = " + ".join(["10 * (p.name LIKE ?)"] + ["(p.name LIKE ?)"] * len(words))
        relevance = (f"({score})", (f"%{q}%", *(f"%{w}%" for w in words)))
        items = product_listing(page, where, params, sort, relevance)
        heading = f"Search results for '{q}'" if q else "Search"
        return page.render("listing.html", title=heading, heading=heading, category=None, crumbs=[], children=[],
                           pager=items, sort=sort, sorts=SEARCH_SORTS, query=q)

    @site.route("/product/{sku}")
    async def product(page: Page):
        p = enabled_product(page, page.request.path_params["sku"])
        attrs = page.db.execute("SELECT label, value FROM product_attributes WHERE product_id = ? ORDER BY rowid",
                                (p["id"],)).fetchall()
        crumbs = category_trail(page, p["category_path"])
        reviews = page.paginate("SELECT * FROM reviews WHERE product_id = ? AND status = 'approved' "
                                "ORDER BY created_at DESC, id DESC", (p["id"],), size=page.cfg.reviews_per_page)
        return page.render("product.html", title=p["name"], p=p, attrs=attrs, crumbs=crumbs, reviews=reviews)

    @site.route("/product/{sku}/review", methods=("POST",))
    async def add_review(page: Page):
        p = enabled_product(page, page.request.path_params["sku"])
        form = await page.form()
        customer = signed_in(page)
        missing = [label for key, label in (("nickname", "Nickname"), ("title", "Summary"), ("body", "Review"))
                   if not form.get(key)]
        rating = form.get("rating", "")
        if missing or rating not in ("1", "2", "3", "4", "5"):
            problems = missing + ([] if rating in ("1", "2", "3", "4", "5") else ["Rating (1 to 5)"])
            page.notice(f"Your review was not saved: please fill in {', '.join(problems)}.")
        else:
            with page.db:
                page.db.execute("INSERT INTO reviews (product_id, customer_id, nickname, rating, title, body, status, "
                                "created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                                (p["id"], customer["id"] if customer else None, form["nickname"], int(rating),
                                 form["title"], form["body"], page.now()))
            page.notice("Thank you: your review was submitted and will appear once a moderator approves it.")
        return page.redirect(f"/product/{p['sku']}")

    # ---- cart and checkout --------------------------------------------------------------------
    def cart_lines(page: Page, customer_id: int):
        return page.db.execute(
            "SELECT p.id, p.sku, p.name, p.price, p.stock, i.qty, ROUND(p.price * i.qty, 2) AS total "
            "FROM cart_items i JOIN products p ON p.id = i.product_id WHERE i.customer_id = ? "
            "ORDER BY i.added_at, p.id", (customer_id,)).fetchall()

    def parse_qty(text: str) -> int | None:
        return int(text) if text.isdigit() and 0 <= int(text) <= 999 else None

    @site.route("/cart")
    async def cart(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        lines = cart_lines(page, customer["id"])
        return page.render("cart.html", title="Shopping Cart", lines=lines,
                           subtotal=round(sum(line["total"] for line in lines), 2))

    @site.route("/cart/add", methods=("POST",))
    async def cart_add(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        form = await page.form()
        p = enabled_product(page, form.get("sku", ""))
        qty = parse_qty(form.get("qty", "1") or "1")
        have = page.db.execute("SELECT qty FROM cart_items WHERE customer_id = ? AND product_id = ?",
                               (customer["id"], p["id"])).fetchone()
        total = (qty or 0) + (have["qty"] if have else 0)
        if not qty:
            page.notice("Enter a quantity of at least 1.")
            return page.redirect(f"/product/{p['sku']}")
        if total > p["stock"]:
            page.notice(f"Sorry, only {p['stock']} of {p['name']} are in stock." if p["stock"]
                        else f"Sorry, {p['name']} is out of stock.")
            return page.redirect(f"/product/{p['sku']}")
        with page.db:
            page.db.execute("INSERT INTO cart_items VALUES (?, ?, ?, ?) ON CONFLICT (customer_id, product_id) "
                            "DO UPDATE SET qty = excluded.qty", (customer["id"], p["id"], total, page.now()))
        page.notice(f"You added {p['name']} to your shopping cart.")
        return page.redirect("/cart")

    @site.route("/cart/update", methods=("POST",))
    async def cart_update(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        form = await page.form()
        p = page.one("SELECT * FROM products WHERE sku = ?", (form.get("sku", ""),), "product")
        qty = 0 if form.get("action") == "remove" else parse_qty(form.get("qty", ""))
        if qty is None:
            page.notice("Enter a whole number as the quantity.")
        elif qty > p["stock"]:
            page.notice(f"Sorry, only {p['stock']} of {p['name']} are in stock.")
        else:
            with page.db:
                if qty == 0:
                    page.db.execute("DELETE FROM cart_items WHERE customer_id = ? AND product_id = ?",
                                    (customer["id"], p["id"]))
                else:
                    page.db.execute("UPDATE cart_items SET qty = ? WHERE customer_id = ? AND product_id = ?",
                                    (qty, customer["id"], p["id"]))
            page.notice(f"You removed {p['name']} from your cart." if qty == 0 else f"Updated {p['name']}: quantity {qty}.")
        return page.redirect("/cart")

    def checkout_form(page: Page, customer, lines, values: dict, errors: list[str], status: int = 200):
        subtotal = round(sum(line["total"] for line in lines), 2)
        methods = {k: {**m, "amount": shipping_amount(k, subtotal)} for k, m in SHIPPING_METHODS.items()}
        return page.render("checkout.html", http_status=status, title="Checkout", lines=lines, subtotal=subtotal,
                           methods=methods, values=values, errors=errors, states=[(s, s) for s in US_STATES])

    @site.route("/checkout")
    async def checkout(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        lines = cart_lines(page, customer["id"])
        if not lines:
            page.notice("Your cart is empty: add products before checking out.")
            return page.redirect("/cart")
        values = {"name": f"{customer['first_name']} {customer['last_name']}", "street": customer["street"],
                  "city": customer["city"], "state": customer["state"], "zip": customer["zip"],
                  "phone": customer["phone"], "shipping": "standard"}
        return checkout_form(page, customer, lines, values, [])

    @site.route("/checkout", methods=("POST",))
    async def place_order(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        form = await page.form()
        lines = cart_lines(page, customer["id"])
        if not lines:
            page.notice("Your cart is empty: add products before checking out.")
            return page.redirect("/cart")
        fields = {"name": "Full name", "street": "Street address", "city": "City", "state": "State",
                  "zip": "ZIP code", "phone": "Phone number"}
        errors = [f"{label} is required." for key, label in fields.items() if not form.get(key)]
        if form.get("state") and form["state"] not in US_STATES:
            errors.append("State must be a two-letter US state code.")
        if form.get("zip") and not (form["zip"].isdigit() and len(form["zip"]) == 5):
            errors.append("ZIP code must be 5 digits.")
        if form.get("shipping") not in SHIPPING_METHODS:
            errors.append("Choose a shipping method.")
        short = [line for line in lines if line["qty"] > line["stock"]]
        errors += [f"Only {line['stock']} of {line['name']} are in stock." for line in short]
        if errors:
            return checkout_form(page, customer, lines, form, errors, status=400)
        subtotal = round(sum(line["total"] for line in lines), 2)
        shipping = shipping_amount(form["shipping"], subtotal)
        now = page.now()
        with page.db:
            oid = page.db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM orders").fetchone()[0]
            number = f"{oid:09d}"
            page.db.execute("INSERT INTO orders VALUES (?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (oid, number, customer["id"], now, now, subtotal, form["shipping"], shipping,
                             round(subtotal + shipping, 2), form["name"], form["street"], form["city"], form["state"],
                             form["zip"], form["phone"]))
            page.db.executemany(
                "INSERT INTO order_items (order_id, product_id, sku, name, price, qty) VALUES (?, ?, ?, ?, ?, ?)",
                [(oid, line["id"], line["sku"], line["name"], line["price"], line["qty"]) for line in lines])
            page.db.executemany("UPDATE products SET stock = stock - ? WHERE id = ?",
                                [(line["qty"], line["id"]) for line in lines])
            page.db.execute("INSERT INTO order_history (order_id, created_at, status, comment) "
                            "VALUES (?, ?, 'pending', 'Order placed.')", (oid, now))
            page.db.execute("DELETE FROM cart_items WHERE customer_id = ?", (customer["id"],))
        page.notice(f"Thank you for your purchase! Your order number is {number}.")
        return page.redirect(f"/account/orders/{number}")

    # ---- account ------------------------------------------------------------------------------
    @site.route("/account")
    async def account(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        recent = page.db.execute("SELECT * FROM orders WHERE customer_id = ? ORDER BY created_at DESC, id DESC LIMIT 5",
                                 (customer["id"],)).fetchall()
        return page.render("account.html", title="My Account", recent=recent)

    @site.route("/account/edit", methods=("GET", "POST"))
    async def account_edit(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        fields = {"first_name": "First name", "last_name": "Last name", "email": "Email", "phone": "Phone number",
                  "street": "Street address", "city": "City", "state": "State", "zip": "ZIP code"}
        if page.request.method == "GET":
            return page.render("account_edit.html", title="Edit Account", fields=fields, values=dict(customer), errors=[])
        form = await page.form()
        errors = [f"{label} is required." for key, label in fields.items() if not form.get(key)]
        if form.get("state") and form["state"] not in US_STATES:
            errors.append("State must be a two-letter US state code.")
        if form.get("email") and "@" not in form["email"]:
            errors.append("Email must be an email address.")
        taken = page.db.execute("SELECT 1 FROM customers WHERE email = ? AND id != ?",
                                (form.get("email", ""), customer["id"])).fetchone()
        if taken:
            errors.append("Another account uses that email.")
        if errors:
            return page.render("account_edit.html", http_status=400, title="Edit Account", fields=fields, values=form,
                               errors=errors)
        with page.db:
            page.db.execute(f"UPDATE customers SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                            (*(form[k] for k in fields), customer["id"]))
        page.notice("You saved the account information.")
        return page.redirect("/account")

    @site.route("/account/orders")
    async def orders(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        items = page.paginate("SELECT o.*, (SELECT SUM(qty) FROM order_items WHERE order_id = o.id) AS items "
                              "FROM orders o WHERE customer_id = ? ORDER BY created_at DESC, id DESC", (customer["id"],))
        return page.render("orders.html", title="My Orders", pager=items)

    def own_order(page: Page, customer):
        return page.one("SELECT * FROM orders WHERE number = ? AND customer_id = ?",
                        (page.request.path_params["number"], customer["id"]), "order")

    @site.route("/account/orders/{number}")
    async def order(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        o = own_order(page, customer)
        items = page.db.execute("SELECT i.*, ROUND(i.price * i.qty, 2) AS total, p.status AS product_status "
                                "FROM order_items i JOIN products p ON p.id = i.product_id WHERE order_id = ? ORDER BY i.id",
                                (o["id"],)).fetchall()
        history = page.db.execute("SELECT * FROM order_history WHERE order_id = ? ORDER BY created_at, id",
                                  (o["id"],)).fetchall()
        return page.render("order.html", title=f"Order #{o['number']}", o=o, items=items, history=history,
                           method=SHIPPING_METHODS[o["shipping_method"]]["label"], cancellable=o["status"] in CANCELLABLE)

    @site.route("/account/orders/{number}/cancel", methods=("POST",))
    async def cancel_order(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        o = own_order(page, customer)
        if o["status"] not in CANCELLABLE:
            page.notice(f"Order #{o['number']} is {o['status']} and can no longer be canceled.")
        else:
            now = page.now()
            with page.db:
                page.db.execute("UPDATE orders SET status = 'canceled', updated_at = ? WHERE id = ?", (now, o["id"]))
                page.db.execute("UPDATE products SET stock = stock + (SELECT SUM(qty) FROM order_items i WHERE "
                                "i.order_id = ? AND i.product_id = products.id) WHERE id IN "
                                "(SELECT product_id FROM order_items WHERE order_id = ?)", (o["id"], o["id"]))
                page.db.execute("INSERT INTO order_history (order_id, created_at, status, comment) "
                                "VALUES (?, ?, 'canceled', 'Canceled by the customer.')", (o["id"], now))
            page.notice(f"You canceled order #{o['number']}.")
        return page.redirect(f"/account/orders/{o['number']}")

    @site.route("/account/orders/{number}/reorder", methods=("POST",))
    async def reorder(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        o = own_order(page, customer)
        items = page.db.execute("SELECT i.product_id, i.qty FROM order_items i JOIN products p ON p.id = i.product_id "
                                "WHERE i.order_id = ? AND p.status = 'enabled' AND p.stock > 0", (o["id"],)).fetchall()
        with page.db:
            page.db.executemany("INSERT INTO cart_items VALUES (?, ?, ?, ?) ON CONFLICT (customer_id, product_id) "
                                "DO UPDATE SET qty = qty + excluded.qty",
                                [(customer["id"], i["product_id"], i["qty"], page.now()) for i in items])
        page.notice(f"Added {len(items)} product(s) of order #{o['number']} to your cart.")
        return page.redirect("/cart")

    @site.route("/account/wishlist")
    async def wishlist(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        items = page.paginate(f"SELECT {PRODUCT_COLUMNS} FROM wishlist_items w JOIN products p ON p.id = w.product_id "
                              "JOIN categories c ON c.id = p.category_id WHERE w.customer_id = ? "
                              "ORDER BY w.added_at, p.id", (customer["id"],))
        return page.render("wishlist.html", title="My Wishlist", pager=items)

    @site.route("/wishlist/{action}", methods=("POST",))
    async def wishlist_change(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        action = page.request.path_params["action"]
        if action not in ("add", "remove"):
            raise NotFound("wishlist action")
        form = await page.form()
        p = page.one("SELECT * FROM products WHERE sku = ?", (form.get("sku", ""),), "product")
        with page.db:
            if action == "add":
                page.db.execute("INSERT OR IGNORE INTO wishlist_items VALUES (?, ?, ?)", (customer["id"], p["id"], page.now()))
            else:
                page.db.execute("DELETE FROM wishlist_items WHERE customer_id = ? AND product_id = ?",
                                (customer["id"], p["id"]))
        page.notice(f"{p['name']} was {'added to' if action == 'add' else 'removed from'} your wishlist.")
        return page.redirect("/account/wishlist")

    @site.route("/account/reviews")
    async def my_reviews(page: Page):
        customer, bounce = need_login(page)
        if bounce:
            return bounce
        items = page.paginate("SELECT r.*, p.name AS product_name, p.sku FROM reviews r JOIN products p "
                              "ON p.id = r.product_id WHERE r.customer_id = ? ORDER BY r.created_at DESC, r.id DESC",
                              (customer["id"],))
        return page.render("my_reviews.html", title="My Product Reviews", pager=items)

    # ---- sign in / out ------------------------------------------------------------------------
    @site.route("/login", methods=("GET", "POST"))
    async def login(page: Page):
        nxt = page.arg("next", "/account")
        nxt = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/account"
        if page.request.method == "GET":
            return page.render("login.html", title="Customer Login", next=nxt, email="", error=None)
        form = await page.form()
        row = page.db.execute("SELECT id FROM customers WHERE lower(email) = lower(?) AND password = ?",
                              (form.get("email", ""), form.get("password", ""))).fetchone()
        if row is None:
            return page.render("login.html", http_status=401, title="Customer Login", next=nxt, email=form.get("email", ""),
                               error="The email or the password is wrong.")
        with page.db:
            page.db.execute("INSERT OR REPLACE INTO sessions VALUES ('shop', ?)", (row["id"],))
        return page.redirect(nxt)

    @site.route("/logout", methods=("POST",))
    async def logout(page: Page):
        with page.db:
            page.db.execute("DELETE FROM sessions WHERE site = 'shop'")
        page.notice("You are signed out.")
        return page.redirect("/")

    return site
