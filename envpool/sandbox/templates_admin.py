"""Task templates on the shop's admin (Maple Market Admin): the sales report over date ranges, the
dashboard's figures, customers, orders (find, change status, comment, cancel), products (stock, price,
status) and review moderation. The administrator is signed in when an episode starts. See
:mod:`envpool.sandbox.task_templates` for the vocabulary.
"""

from __future__ import annotations

from envpool.sandbox.shop_rules import ORDER_STATUSES, ORDER_TRANSITIONS, SALES_STATUSES
from envpool.sandbox.task_plan import Target, answer, click, search, select, type_
from envpool.sandbox.task_templates import (DONE, INFO, STATE, Draft, SiteData, Template, all_of, amount, includes,
                                            money, page, registry, sql_text, state)

TEMPLATES: list[Template] = []
register = registry(TEMPLATES)

SALES = ", ".join(sql_text(s) for s in SALES_STATUSES)
# (from, to) date ranges the report templates ask about: a month, a quarter, a few weeks, a season
RANGES = [("2024-05-01", "2024-05-31"), ("2024-01-01", "2024-03-31"), ("2023-11-15", "2023-12-14"),
          ("2023-06-01", "2023-08-31"), ("2023-02-01", "2023-02-28"), ("2022-10-01", "2022-12-31"),
          ("2024-06-01", "2024-06-15"), ("2023-09-01", "2023-09-30")]
DASHBOARD_ORDERS = 5  # the dashboard links the newest orders


def report_plan(start: str, end: str) -> list:
    """From any admin page to the sales report for ``start``..``end`` (both days included)."""
    return [click(href="/reports/sales"), type_(start, name="from"), type_(end, name="to"), click(text="Show Report")]


def sales_in(data: SiteData, start: str, end: str, what: str):
    return data.value("shop", f"SELECT {what} FROM orders WHERE created_at BETWEEN ? AND ? AND status IN ({SALES})",
                      (f"{start} 00:00:00", f"{end} 23:59:59"))


def to_order(data: SiteData, number: str) -> list:
    """From the dashboard to an order's page: its link there if it is among the newest, else a search."""
    newest = [r["number"] for r in data.rows("shop", "SELECT number FROM orders ORDER BY created_at DESC, id DESC "
                                             f"LIMIT {DASHBOARD_ORDERS}")]
    if number in newest:
        return [click(href=f"/orders/{number}")]
    return [click(href="/orders"), search(number, name="q"), click(href=f"/orders/{number}")]


def to_product(p) -> list:
    """From any admin page to a product's edit form: Products, search its name, open it."""
    return [click(href="/products"), search(p["name"], name="q"), click(href=f"/products/{p['sku']}")]


def orders_in(data: SiteData, statuses: tuple[str, ...], key: str, k: int):
    marks = ", ".join(sql_text(s) for s in statuses)
    return data.sample("shop", f"SELECT o.*, c.first_name || ' ' || c.last_name AS customer FROM orders o JOIN customers c "
                       f"ON c.id = o.customer_id WHERE o.status IN ({marks}) ORDER BY o.id", k, key)


# ---- information-seeking --------------------------------------------------------------------------
@register("admin-sales-report", "How many orders count as sales from {{start}} to {{end}}, according to the sales "
          "report?", INFO)
def sales_report(data: SiteData):
    for start, end in RANGES[:4]:
        n = sales_in(data, start, end, "COUNT(*)")
        yield Draft({"start": start, "end": end}, [*report_plan(start, end), answer(str(n))], includes(str(n)))


@register("admin-sales-revenue", "What was the total revenue of the orders placed from {{start}} to {{end}}?", INFO)
def sales_revenue(data: SiteData):
    for start, end in RANGES[4:]:
        total = sales_in(data, start, end, "COALESCE(ROUND(SUM(grand_total), 2), 0)")
        yield Draft({"start": start, "end": end}, [*report_plan(start, end), answer(money(total))], includes(amount(total)))


@register("admin-bestseller", "Which product sold the most units from {{start}} to {{end}}?", INFO, held_out=True)
def bestseller(data: SiteData):
    for start, end in RANGES[1:] + RANGES[:1]:
        best = data.rows("shop", "SELECT p.name, SUM(i.qty) AS qty FROM order_items i JOIN orders o ON o.id = i.order_id "
                         "JOIN products p ON p.id = i.product_id WHERE o.created_at BETWEEN ? AND ? "
                         f"AND o.status IN ({SALES}) GROUP BY i.product_id ORDER BY qty DESC LIMIT 2",
                         (f"{start} 00:00:00", f"{end} 23:59:59"))
        if len(best) == 2 and best[0]["qty"] > best[1]["qty"]:
            yield Draft({"start": start, "end": end}, [*report_plan(start, end), answer(best[0]["name"])],
                        includes(best[0]["name"]))


@register("admin-store-count", "How many {{things}} does the store have?", INFO, count=3)
def store_count(data: SiteData):
    for things, sql in (("products", "SELECT COUNT(*) FROM products"), ("customers", "SELECT COUNT(*) FROM customers"),
                        ("pending reviews", "SELECT COUNT(*) FROM reviews WHERE status = 'pending'")):
        n = data.value("shop", sql)
        yield Draft({"things": things}, [answer(str(n))], includes(str(n)))


def _customers(data: SiteData, key: str):
    return data.sample("shop", "SELECT c.*, c.first_name || ' ' || c.last_name AS name, (SELECT COUNT(*) FROM orders o "
                       "WHERE o.customer_id = c.id) AS orders, (SELECT COALESCE(ROUND(SUM(grand_total), 2), 0) FROM "
                       f"orders o WHERE o.customer_id = c.id AND o.status IN ({SALES})) AS spent FROM customers c "
                       "WHERE c.id > 1 AND orders > 0", 4, key)


@register("admin-customer-email", "What is the email address of the customer {{name}}?", INFO)
def customer_email(data: SiteData):
    for c in _customers(data, "admin-customer-email"):
        plan = [click(href="/customers"), search(c["name"], name="q"), answer(c["email"])]
        yield Draft({"name": c["name"]}, plan, includes(c["email"]))


@register("admin-customer-lifetime", "What are the lifetime sales of the customer {{name}}?", INFO)
def customer_lifetime(data: SiteData):
    for c in _customers(data, "admin-customer-lifetime"):
        plan = [click(href="/customers"), search(c["name"], name="q"), click(href=f"/customers/{c['id']}"),
                answer(money(c["spent"]))]
        yield Draft({"name": c["name"]}, plan, includes(amount(c["spent"])))


@register("admin-status-count", "How many orders have the status {{status}}?", INFO)
def status_count(data: SiteData):
    for status in ("on_hold", "processing", "closed", "pending"):
        n = data.value("shop", "SELECT COUNT(*) FROM orders WHERE status = ?", (status,))
        label = ORDER_STATUSES[status]
        plan = [click(href="/orders"), select(label, name="status"), click(text="Filter"), answer(str(n))]
        yield Draft({"status": label}, plan, includes(str(n)))


@register("admin-product-stock", "How many units of the {{product}} are in stock?", INFO)
def product_stock(data: SiteData):
    for p in data.sample("shop", "SELECT * FROM products ORDER BY id", 4, "admin-product-stock"):
        plan = [click(href="/products"), search(p["name"], name="q"), answer(str(p["stock"]))]
        yield Draft({"product": p["name"]}, plan, includes(str(p["stock"])))


@register("admin-order-customer", "Who placed order #{{number}}, and what was its grand total?", INFO)
def order_customer(data: SiteData):
    for o in orders_in(data, tuple(ORDER_STATUSES), "admin-order-customer", 4):
        plan = [*to_order(data, o["number"]), answer(f"{o['customer']}, {money(o['grand_total'])}")]
        yield Draft({"number": o["number"]}, plan, includes(o["customer"], amount(o["grand_total"])))


# ---- state-changing: orders -----------------------------------------------------------------------
def history_sql(number: str, columns: str = "h.status, h.comment") -> str:
    """The order's newest history entry."""
    return (f"SELECT {columns} FROM order_history h JOIN orders o ON o.id = h.order_id WHERE o.number = {sql_text(number)} "
            "ORDER BY h.created_at DESC, h.id DESC LIMIT 1")


def status_sql(number: str) -> str:
    return f"SELECT status FROM orders WHERE number = {sql_text(number)}"


COMMENTS = ["Customer called to cancel", "Payment was declined twice", "Duplicate of another order",
            "Address could not be verified", "Customer asked for a gift receipt", "Leave the parcel at the back door",
            "Called the customer about the delay"]


@register("admin-order-cancel", "Cancel order #{{number}} with the comment '{{comment}}'.", STATE)
def order_cancel(data: SiteData):
    picks = [data.one("shop", "SELECT * FROM orders WHERE number = '000000698'")]  # the first example task
    picks += [o for o in orders_in(data, ("processing", "on_hold"), "admin-order-cancel", 3)]
    for o, comment in zip(picks, COMMENTS):
        plan = [*to_order(data, o["number"]), select("Canceled", name="status"), type_(comment, name="comment"),
                click(text="Submit Status and Comment"), answer(DONE)]
        yield Draft({"number": o["number"], "comment": comment}, plan,
                    all_of(state("admin", status_sql(o["number"]), exact="canceled"),
                           state("admin", history_sql(o["number"]), exact=f"canceled\t{comment}")))


@register("admin-order-status", "Change the status of order #{{number}} to {{status}}.", STATE)
def order_status(data: SiteData):
    moves = [("pending", "processing"), ("processing", "complete"), ("on_hold", "processing"), ("complete", "closed")]
    for old, new in moves:
        o = orders_in(data, (old,), f"admin-order-status/{old}", 1)[0]
        assert new in ORDER_TRANSITIONS[old]
        plan = [*to_order(data, o["number"]), select(ORDER_STATUSES[new], name="status"),
                click(text="Submit Status and Comment"), answer(DONE)]
        yield Draft({"number": o["number"], "status": ORDER_STATUSES[new]}, plan,
                    state("admin", status_sql(o["number"]), exact=new))


@register("admin-order-comment", "Add the comment '{{comment}}' to order #{{number}} without changing its status.",
          STATE, count=3)
def order_comment(data: SiteData):
    for o, comment in zip(orders_in(data, ("pending", "processing", "on_hold", "complete"), "admin-order-comment", 3),
                          COMMENTS[4:]):
        plan = [*to_order(data, o["number"]), type_(comment, name="comment"), click(text="Submit Status and Comment"),
                answer(DONE)]
        yield Draft({"comment": comment, "number": o["number"]}, plan,
                    all_of(state("admin", status_sql(o["number"]), exact=o["status"]),
                           state("admin", history_sql(o["number"]), exact=f"{o['status']}\t{comment}")))


# ---- state-changing: products and reviews ---------------------------------------------------------
def _products(data: SiteData, key: str, k: int = 4):
    return data.sample("shop", "SELECT * FROM products WHERE status = 'enabled' ORDER BY id", k, key)


def product_sql(sku: str, column: str) -> str:
    return f"SELECT {column} FROM products WHERE sku = {sql_text(sku)}"


@register("admin-product-price", "Change the price of the {{product}} to ${{price}}.", STATE)
def product_price(data: SiteData):
    for p in _products(data, "admin-product-price"):
        price = round(p["price"] * 0.8, 0) - 0.01  # a 20% markdown, ending in .99
        text = f"{price:.2f}"
        plan = [*to_product(p), type_(text, name="price"), click(text="Save"), answer(DONE)]
        shop_price = page(f"__SHOP__/product/{p['sku']}", "document.querySelector('main p strong').outerText",
                          exact=money(price))  # the shop shows the new price
        yield Draft({"product": p["name"], "price": text}, plan,
                    all_of(state("admin", product_sql(p["sku"], "price"), exact=text), shop_price))


@register("admin-product-restock", "Set the quantity in stock of the {{product}} to {{qty}} units.", STATE)
def product_restock(data: SiteData):
    for i, p in enumerate(_products(data, "admin-product-restock")):
        qty = (40, 125, 0, 75)[i % 4]
        plan = [*to_product(p), type_(str(qty), name="stock"), click(text="Save"), answer(DONE)]
        yield Draft({"product": p["name"], "qty": qty}, plan, state("admin", product_sql(p["sku"], "stock"), exact=str(qty)))


@register("admin-product-disable", "Disable the product {{product}} so that the shop no longer shows it.", STATE,
          count=3, held_out=True)
def product_disable(data: SiteData):
    for p in _products(data, "admin-product-disable", 3):
        plan = [*to_product(p), select("Disabled", name="status"), click(text="Save"), answer(DONE)]
        yield Draft({"product": p["name"]}, plan, state("admin", product_sql(p["sku"], "status, price"),
                                                        exact=f"disabled\t{p['price']}"))


@register("admin-review-moderate", "{{action}} the pending review '{{title}}' that {{nickname}} wrote about the "
          "{{product}}.", STATE)
def review_moderate(data: SiteData):
    shown = data.rows("shop", "SELECT r.*, p.name AS product, p.sku FROM reviews r JOIN products p ON p.id = r.product_id "
                      f"WHERE r.status = 'pending' ORDER BY r.created_at DESC, r.id DESC LIMIT {data.cfg.page_size}")
    once = [r for r in shown if sum(s["sku"] == r["sku"] for s in shown) == 1]  # one row per product: its link names it
    for i, r in enumerate(data.shuffled(once, "admin-review-moderate")):
        action = ("Approve", "Reject")[i % 2]
        plan = [click(href="/reviews", nth=0), click(text=action, after=Target(href=f"/products/{r['sku']}")), answer(DONE)]
        want = {"Approve": "approved", "Reject": "rejected"}[action]
        yield Draft({"action": action, "title": r["title"], "nickname": r["nickname"], "product": r["product"]}, plan,
                    state("admin", f"SELECT status FROM reviews WHERE id = {r['id']}", exact=want))
