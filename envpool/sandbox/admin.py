"""The shop's admin (modelled on WebArena's Magento admin), on the shop's database: orders with
filters and status changes, products with search and editing, customers, a sales report over a date
range with best sellers, and review moderation. The administrator is signed in at start.
"""

from __future__ import annotations

from datetime import date, timedelta

from envpool.sandbox.shop_rules import ORDER_STATUSES, ORDER_TRANSITIONS, SALES_STATUSES, SHIPPING_METHODS
from envpool.sandbox.states import StateStore
from envpool.sandbox.web import NotFound, Page, Site
from webrl.config import SandboxConfig

PRODUCT_SORTS = {"name": ("Name", "p.name ASC"), "price_asc": ("Price: low to high", "p.price ASC"),
                 "price_desc": ("Price: high to low", "p.price DESC"), "stock": ("Quantity: low to high", "p.stock ASC"),
                 "newest": ("Newest", "p.created_at DESC")}
REVIEW_ACTIONS = {"approve": "approved", "reject": "rejected"}
REPORT_DAYS = 30  # the sales report's default range ends today and spans this many days


class Admin(Site):
    def globals(self, page: Page) -> dict:
        pending = page.db.execute("SELECT COUNT(*) FROM reviews WHERE status = 'pending'").fetchone()[0]
        return super().globals(page) | {"pending_reviews": pending, "statuses": ORDER_STATUSES}


def parse_day(text: str) -> date | None:
    """A YYYY-MM-DD date, or None if ``text`` is empty; raises ValueError when malformed."""
    return date.fromisoformat(text) if text else None


def date_range(page: Page, default_days: int | None) -> tuple[str, str, list[str]]:
    """``from`` and ``to`` query arguments as inclusive dates (text), and errors for malformed ones."""
    errors, out = [], []
    defaults = {"from": "", "to": ""}
    if default_days:
        defaults = {"from": (page.cfg.today - timedelta(days=default_days - 1)).isoformat(),
                    "to": page.cfg.today.isoformat()}
    for key in ("from", "to"):
        text = page.arg(key, defaults[key])
        try:
            out.append(parse_day(text).isoformat() if text else "")
        except ValueError:
            errors.append(f"'{text}' is not a date: write it as YYYY-MM-DD (e.g. 2024-05-31).")
            out.append("")
    return out[0], out[1], errors


def range_clause(start: str, end: str, column: str = "o.created_at") -> tuple[str, tuple]:
    parts, params = [], []
    if start:
        parts.append(f"{column} >= ?")
        params.append(f"{start} 00:00:00")
    if end:
        parts.append(f"{column} <= ?")
        params.append(f"{end} 23:59:59")
    return " AND ".join(parts) or "1", tuple(params)


def build(store: StateStore, cfg: SandboxConfig, urls: dict[str, str]) -> Admin:
    site = Admin("admin", "Maple Market Admin", store, cfg, urls)

    @site.route("/")
    async def dashboard(page: Page):
        db = page.db
        sales = ", ".join(f"'{s}'" for s in SALES_STATUSES)
        totals = db.execute(f"SELECT COUNT(*) AS orders, COALESCE(ROUND(SUM(grand_total), 2), 0) AS revenue FROM orders "
                            f"WHERE status IN ({sales})").fetchone()
        recent = db.execute("SELECT o.*, c.first_name || ' ' || c.last_name AS customer_name FROM orders o "
                            "JOIN customers c ON c.id = o.customer_id ORDER BY o.created_at DESC, o.id DESC LIMIT 5").fetchall()
        best = db.execute(f"SELECT i.sku, i.name, SUM(i.qty) AS qty FROM order_items i JOIN orders o ON o.id = i.order_id "
                          f"WHERE o.status IN ({sales}) GROUP BY i.product_id ORDER BY qty DESC, i.sku LIMIT 5").fetchall()
        counts = {k: db.execute(f"SELECT COUNT(*) FROM {k}").fetchone()[0] for k in ("products", "customers")}
        return page.render("dashboard.html", title="Dashboard", totals=totals, recent=recent, best=best, counts=counts)

    # ---- orders -------------------------------------------------------------------------------
    @site.route("/orders")
    async def orders(page: Page):
        status, q = page.arg("status"), page.arg("q")
        start, end, errors = date_range(page, None)
        where, params = range_clause(start, end)
        if status in ORDER_STATUSES:
            where += " AND o.status = ?"
            params += (status,)
        if q:
            where += (" AND (o.number LIKE ? OR c.first_name || ' ' || c.last_name LIKE ? OR c.email LIKE ? "
                      "OR o.ship_name LIKE ?)")
            params += (f"%{q}%",) * 4
        items = page.paginate("SELECT o.*, c.first_name || ' ' || c.last_name AS customer_name, c.email FROM orders o "
                              f"JOIN customers c ON c.id = o.customer_id WHERE {where} ORDER BY o.created_at DESC, o.id DESC",
                              params)
        return page.render("orders.html", title="Orders", pager=items, status=status, q=q, start=start, end=end,
                           errors=errors)

    def find_order(page: Page):
        return page.one("SELECT o.*, c.first_name || ' ' || c.last_name AS customer_name, c.email FROM orders o "
                        "JOIN customers c ON c.id = o.customer_id WHERE o.number = ?",
                        (page.request.path_params["number"],), "order")

    @site.route("/orders/{number}")
    async def order(page: Page):
        o = find_order(page)
        items = page.db.execute("SELECT i.*, ROUND(i.price * i.qty, 2) AS total FROM order_items i WHERE order_id = ? "
                                "ORDER BY i.id", (o["id"],)).fetchall()
        history = page.db.execute("SELECT * FROM order_history WHERE order_id = ? ORDER BY created_at, id",
                                  (o["id"],)).fetchall()
        moves = [(s, ORDER_STATUSES[s]) for s in ORDER_TRANSITIONS[o["status"]]]
        return page.render("order.html", title=f"Order # {o['number']}", o=o, items=items, history=history, moves=moves,
                           method=SHIPPING_METHODS[o["shipping_method"]]["label"])

    @site.route("/orders/{number}/status", methods=("POST",))
    async def order_status(page: Page):
        o = find_order(page)
        form = await page.form()
        new, comment = form.get("status", ""), form.get("comment", "")
        if new == "":
            new = o["status"]
        if new != o["status"] and new not in ORDER_TRANSITIONS[o["status"]]:
            page.notice(f"An order that is {ORDER_STATUSES[o['status']]} cannot become "
                        f"{ORDER_STATUSES.get(new, repr(new))}.")
        elif new == o["status"] and not comment:
            page.notice("Nothing to save: choose a new status or write a comment.")
        else:
            now = page.now()
            with page.db:
                page.db.execute("UPDATE orders SET status = ?, updated_at = ? WHERE id = ?", (new, now, o["id"]))
                page.db.execute("INSERT INTO order_history (order_id, created_at, status, comment) VALUES (?, ?, ?, ?)",
                                (o["id"], now, new, comment or f"Status changed to {ORDER_STATUSES[new]}."))
                if new == "canceled":
                    page.db.execute("UPDATE products SET stock = stock + (SELECT SUM(qty) FROM order_items i WHERE "
                                    "i.order_id = ? AND i.product_id = products.id) WHERE id IN "
                                    "(SELECT product_id FROM order_items WHERE order_id = ?)", (o["id"], o["id"]))
            page.notice("You saved the order." if new != o["status"] else "You added a comment to the order.")
        return page.redirect(f"/orders/{o['number']}")

    # ---- products -----------------------------------------------------------------------------
    @site.route("/products")
    async def products(page: Page):
        q, status, category, sort = page.arg("q"), page.arg("status"), page.arg("category"), page.arg("sort", "name")
        where, params = "1", ()
        for word in q.split()[:8]:
            where += " AND (p.name LIKE ? OR p.sku LIKE ? OR p.brand LIKE ?)"
            params += (f"%{word}%",) * 3
        if status in ("enabled", "disabled"):
            where += " AND p.status = ?"
            params += (status,)
        if category:
            where += " AND (c.slug = ? OR c.path LIKE (SELECT path FROM categories WHERE slug = ?) || '/%')"
            params += (category, category)
        order = PRODUCT_SORTS.get(sort, PRODUCT_SORTS["name"])[1]
        items = page.paginate("SELECT p.*, c.path AS category_path FROM products p JOIN categories c "
                              f"ON c.id = p.category_id WHERE {where} ORDER BY {order}, p.id", params)
        cats = page.db.execute("SELECT slug, path FROM categories ORDER BY path").fetchall()
        return page.render("products.html", title="Products", pager=items, q=q, status=status, category=category,
                           sort=sort, sorts=PRODUCT_SORTS, categories=cats)

    def product_form(page: Page, p, values: dict, errors: list[str], status: int = 200):
        sold = page.db.execute("SELECT COALESCE(SUM(i.qty), 0) FROM order_items i JOIN orders o ON o.id = i.order_id "
                               f"WHERE i.product_id = ? AND o.status IN ({', '.join(repr(s) for s in SALES_STATUSES)})",
                               (p["id"],)).fetchone()[0]
        attrs = page.db.execute("SELECT label, value FROM product_attributes WHERE product_id = ? ORDER BY rowid",
                                (p["id"],)).fetchall()
        return page.render("product.html", http_status=status, title=f"Edit {p['name']}", p=p, values=values, errors=errors,
                           sold=sold, attrs=attrs)

    def find_product(page: Page):
        return page.one("SELECT p.*, c.path AS category_path FROM products p JOIN categories c ON c.id = p.category_id "
                        "WHERE p.sku = ?", (page.request.path_params["sku"],), "product")

    @site.route("/products/{sku}")
    async def product(page: Page):
        p = find_product(page)
        return product_form(page, p, dict(p), [])

    @site.route("/products/{sku}", methods=("POST",))
    async def save_product(page: Page):
        p = find_product(page)
        form = await page.form()
        errors = []
        name = form.get("name", "")
        if not name:
            errors.append("Product name is required.")
        elif page.db.execute("SELECT 1 FROM products WHERE name = ? AND id != ?", (name, p["id"])).fetchone():
            errors.append("Another product has that name.")
        try:
            price = round(float(form.get("price", "").replace("$", "").replace(",", "")), 2)
            if price <= 0:
                raise ValueError
        except ValueError:
            errors.append("Price must be a positive number, like 24.99.")
        stock = form.get("stock", "")
        if not stock.isdigit():
            errors.append("Quantity must be a whole number, 0 or more.")
        if form.get("status") not in ("enabled", "disabled"):
            errors.append("Status must be Enabled or Disabled.")
        if errors:
            return product_form(page, p, form, errors, status=400)
        with page.db:
            page.db.execute("UPDATE products SET name = ?, price = ?, stock = ?, status = ?, description = ? WHERE id = ?",
                            (name, price, int(stock), form["status"], form.get("description") or p["description"], p["id"]))
        page.notice(f"You saved the product {name}.")
        return page.redirect(f"/products/{p['sku']}")

    # ---- customers ----------------------------------------------------------------------------
    @site.route("/customers")
    async def customers(page: Page):
        q = page.arg("q")
        where, params = "1", ()
        for word in q.split()[:8]:
            where += " AND (first_name || ' ' || last_name LIKE ? OR email LIKE ? OR phone LIKE ? OR city LIKE ?)"
            params += (f"%{word}%",) * 4
        items = page.paginate(f"SELECT * FROM customers WHERE {where} ORDER BY id", params)
        return page.render("customers.html", title="Customers", pager=items, q=q)

    @site.route("/customers/{id}")
    async def customer(page: Page):
        c = page.one("SELECT * FROM customers WHERE id = ?", (page.path_int("id"),), "customer")
        stats = page.db.execute(
            "SELECT COUNT(*) AS orders, COALESCE(ROUND(SUM(grand_total), 2), 0) AS spent FROM orders "
            f"WHERE customer_id = ? AND status IN ({', '.join(repr(s) for s in SALES_STATUSES)})", (c["id"],)).fetchone()
        items = page.paginate("SELECT * FROM orders WHERE customer_id = ? ORDER BY created_at DESC, id DESC", (c["id"],))
        return page.render("customer.html", title=f"{c['first_name']} {c['last_name']}", c=c, stats=stats, pager=items)

    # ---- reports ------------------------------------------------------------------------------
    @site.route("/reports/sales")
    async def sales_report(page: Page):
        start, end, errors = date_range(page, REPORT_DAYS)
        where, params = range_clause(start, end)
        sales = ", ".join(f"'{s}'" for s in SALES_STATUSES)
        totals = page.db.execute(
            "SELECT COUNT(*) AS orders, COALESCE(ROUND(SUM(subtotal), 2), 0) AS subtotal, "
            "COALESCE(ROUND(SUM(shipping_amount), 2), 0) AS shipping, COALESCE(ROUND(SUM(grand_total), 2), 0) AS revenue, "
            "(SELECT COALESCE(SUM(qty), 0) FROM order_items i JOIN orders o2 ON o2.id = i.order_id "
            f"WHERE o2.id IN (SELECT o.id FROM orders o WHERE {where} AND o.status IN ({sales}))) AS items "
            f"FROM orders o WHERE {where} AND o.status IN ({sales})", params + params).fetchone()
        by_status = page.db.execute(f"SELECT o.status, COUNT(*) AS orders, ROUND(SUM(grand_total), 2) AS total "
                                    f"FROM orders o WHERE {where} GROUP BY o.status ORDER BY orders DESC, o.status",
                                    params).fetchall()
        best = page.db.execute(
            "SELECT i.sku, p.name, SUM(i.qty) AS qty, ROUND(SUM(i.qty * i.price), 2) AS revenue FROM order_items i "
            "JOIN orders o ON o.id = i.order_id JOIN products p ON p.id = i.product_id "
            f"WHERE {where} AND o.status IN ({sales}) GROUP BY i.product_id ORDER BY qty DESC, revenue DESC, i.sku "
            "LIMIT 10", params).fetchall()
        return page.render("report.html", title="Sales Report", start=start, end=end, errors=errors, totals=totals,
                           by_status=by_status, best=best)

    # ---- reviews ------------------------------------------------------------------------------
    @site.route("/reviews")
    async def reviews(page: Page):
        status = page.arg("status", "pending")
        where, params = ("r.status = ?", (status,)) if status in ("pending", "approved", "rejected") else ("1", ())
        items = page.paginate("SELECT r.*, p.name AS product_name, p.sku FROM reviews r JOIN products p "
                              f"ON p.id = r.product_id WHERE {where} ORDER BY r.created_at DESC, r.id DESC", params)
        return page.render("reviews.html", title="Reviews", pager=items, status=status)

    @site.route("/reviews/{id}/{action}", methods=("POST",))
    async def moderate(page: Page):
        r = page.one("SELECT * FROM reviews WHERE id = ?", (page.path_int("id"),), "review")
        action = page.request.path_params["action"]
        with page.db:
            if action == "delete":
                page.db.execute("DELETE FROM reviews WHERE id = ?", (r["id"],))
            elif action in REVIEW_ACTIONS:
                page.db.execute("UPDATE reviews SET status = ? WHERE id = ?", (REVIEW_ACTIONS[action], r["id"]))
            else:
                raise NotFound("review action")
        page.notice(f"Review '{r['title']}' by {r['nickname']} was {'deleted' if action == 'delete' else REVIEW_ACTIONS[action]}.")
        form = await page.form()
        back = form.get("back", "/reviews")
        return page.redirect(back if back.startswith("/") and not back.startswith("//") else "/reviews")

    return site
