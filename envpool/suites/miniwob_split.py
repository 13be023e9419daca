"""The fixed split of MiniWoB++ tasks into ``train`` and ``heldout``.

Held-out tasks are never used for demonstrations, supervised fine-tuning or reinforcement learning:
they measure how a policy does on tasks it never trained on. ``webrl env demo --save`` refuses them
(``--allow-heldout`` writes them for evaluation only), and ``webrl eval --suite miniwob --split heldout``
runs them.

The held-out set is chosen to be comparable to the training set: every family has tasks on both
sides (a harder or reworded variant held out, its siblings trained on), and 14 of the held-out tasks
have a scripted demonstrator, so held-out success can be read against the demonstrator's ceiling.
A task and its ``-nodelay`` twin always sit on the same side. Both lists are literal so that the split
never moves: a new ``miniwob`` release with new pages fails the split test until they are placed.
"""

from __future__ import annotations

import hashlib

HELDOUT: tuple[str, ...] = (
    "book-flight", "book-flight-nodelay", "choose-date-medium", "click-checkboxes-transfer", "click-collapsible-2",
    "click-collapsible-2-nodelay", "click-dialog-2", "click-menu-2", "click-shades", "click-tab-2-hard",
    "click-test-transfer", "copy-paste-2", "count-sides", "drag-items-grid", "draw-line",
    "email-inbox-forward-nl-turk", "email-inbox-important", "email-inbox-nl-turk", "enter-text-dynamic",
    "enter-time", "find-midpoint", "focus-text-2", "form-sequence-3", "highlight-text-2", "login-user-popup",
    "multi-orderings", "read-table-2", "simple-algebra", "social-media-some", "use-colorwheel-2", "use-slider-2",
)

TRAIN: tuple[str, ...] = (
    "ascending-numbers", "bisect-angle", "button-delay", "buy-ticket", "chase-circle", "choose-date",
    "choose-date-easy", "choose-date-nodelay", "choose-list", "circle-center", "click-button",
    "click-button-sequence", "click-checkboxes", "click-checkboxes-large", "click-checkboxes-soft",
    "click-collapsible", "click-collapsible-nodelay", "click-color", "click-dialog", "click-link", "click-menu",
    "click-option", "click-pie", "click-pie-nodelay", "click-scroll-list", "click-shape", "click-tab", "click-tab-2",
    "click-tab-2-easy", "click-tab-2-medium", "click-test", "click-test-2", "click-widget", "copy-paste",
    "count-shape", "daily-calendar", "drag-box", "drag-circle", "drag-cube", "drag-items", "drag-shapes",
    "drag-shapes-2", "drag-single-shape", "drag-sort-numbers", "draw-circle", "email-inbox", "email-inbox-delete",
    "email-inbox-forward", "email-inbox-forward-nl", "email-inbox-noscroll", "email-inbox-reply",
    "email-inbox-star-reply", "enter-date", "enter-password", "enter-text", "enter-text-2", "find-greatest",
    "find-word", "focus-text", "form-sequence", "form-sequence-2", "generate-number", "grid-coordinate",
    "guess-number", "highlight-text", "hot-cold", "hover-shape", "identify-shape", "login-user", "moving-items",
    "multi-layouts", "navigate-tree", "number-checkboxes", "odd-or-even", "order-food", "phone-book", "read-table",
    "resize-textarea", "right-angle", "scroll-text", "scroll-text-2", "search-engine", "sign-agreement",
    "simon-says", "simple-arithmetic", "social-media", "social-media-all", "stock-market", "terminal", "text-editor",
    "text-transform", "tic-tac-toe", "unicode-test", "use-autocomplete", "use-autocomplete-nodelay",
    "use-colorwheel", "use-slider", "use-spinner", "visual-addition",
)

SPLITS: dict[str, tuple[str, ...]] = {"train": TRAIN, "heldout": HELDOUT}


def task_name(task_id: str) -> str:
    """``miniwob/click-button`` or ``click-button`` -> ``click-button``."""
    return task_id.split("/", 1)[1] if task_id.startswith("miniwob/") else task_id


def is_heldout(task_id: str) -> bool:
    """Whether a MiniWoB++ task (``miniwob/<name>`` or ``<name>``) is held out."""
    return task_name(task_id) in HELDOUT


def split_of(task_id: str) -> str | None:
    """``train``, ``heldout``, or None for a name in neither list."""
    name = task_name(task_id)
    return next((split for split, names in SPLITS.items() if name in names), None)


def fingerprint() -> str:
    """A short hash of both lists, so that a change to the split shows in a diff and in reports."""
    text = "train:" + ",".join(sorted(TRAIN)) + "\nheldout:" + ",".join(sorted(HELDOUT))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
