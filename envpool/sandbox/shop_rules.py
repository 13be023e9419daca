"""Business rules the shop, its admin and the data generator share: shipping, order statuses."""

from __future__ import annotations

import re

# shipping methods: label, flat price, and the subtotal from which it is free (None: never)
SHIPPING_METHODS = {
    "standard": {"label": "Standard Shipping (3-5 business days)", "price": 5.00, "free_from": 50.00},
    "express": {"label": "Express Shipping (1-2 business days)", "price": 15.00, "free_from": None},
}

ORDER_STATUSES = {
    "pending": "Pending",
    "processing": "Processing",
    "on_hold": "On Hold",
    "complete": "Complete",
    "canceled": "Canceled",
    "closed": "Closed",
}

# statuses an admin may move an order to, from each status
ORDER_TRANSITIONS = {
    "pending": ("processing", "on_hold", "canceled"),
    "processing": ("complete", "on_hold", "canceled"),
    "on_hold": ("processing", "canceled"),
    "complete": ("closed",),
    "canceled": (),
    "closed": (),
}

# statuses a customer may cancel from
CANCELLABLE = ("pending", "processing")

# orders counted as sales in reports
SALES_STATUSES = ("pending", "processing", "on_hold", "complete")

DEFAULT_PASSWORD = "Password123"  # every generated customer's and forum user's password
US_STATES = ("AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
             "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY").split()


def shipping_amount(method: str, subtotal: float) -> float:
    """What shipping costs for an order of ``subtotal`` dollars."""
    rule = SHIPPING_METHODS[method]
    if rule["free_from"] is not None and subtotal >= rule["free_from"]:
        return 0.0
    return rule["price"]


def money(value: float) -> str:
    """``1234.5`` -> ``$1,234.50``."""
    return f"${value:,.2f}"


def slugify(text: str) -> str:
    """``"Men's Clothing"`` -> ``"mens-clothing"``; ``&`` becomes ``and``."""
    text = text.lower().replace("&", " and ").replace("'", "")
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")
