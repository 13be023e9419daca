"""Small multi-page apps: a search engine, an email inbox, a phone book, a terminal."""

from __future__ import annotations

import re

from envpool.suites.miniwob_scripts.view import (
    PolicyStuck, View, click, fill_then, ordinal, press_enter, quoted, type_into,
)
from webrl.types import ActionKind

RESULTS_PER_PAGE = 3  # the search engine's page size, as its result pages show


def search_engine(v: View) -> str:
    """search-engine: search the quoted term, go to the page holding the n-th result (3 a page,
    numbered links below them), click it."""
    term, n = quoted(v.instruction)[0], ordinal(v.instruction)
    box, search = v.text_inputs()[0], v.button("Search")
    clicks = [a.element for a in v.past if a.kind is ActionKind.click]
    if search.id not in clicks:
        return fill_then([(box, term)], search)
    page = (n - 1) // RESULTS_PER_PAGE + 1
    results_html, _, pager_html = v.html.partition("<ul>")
    if page > 1 and clicks[-1] == search.id:  # still on the first page of results
        link = re.search(rf'<a id="(\d+)"[^>]*>{page}</a>', pager_html)
        if not link:
            raise PolicyStuck(f"no link to result page {page}")
        return click(int(link.group(1)))
    results = [int(i) for i in re.findall(r'<a id="(\d+)"', results_html[results_html.index("Search</button>"):])]
    return click(results[(n - 1) % RESULTS_PER_PAGE])


def _email_icons(v: View) -> list[int]:
    """The open email's unlabelled icons, in page order: back, trash, star."""
    return [e.id for e in v.elements if e.tag == "span" and not e.text.strip()]


def email_icon(icon: int):
    """email-inbox-delete (trash, icon 1), email-inbox-important (star, icon 2): open the email of
    the named sender, then click the icon in the open email's bar (the icons carry no text: the
    policy knows the bar's layout, back then trash then star)."""

    def policy(v: View) -> str:
        sender = re.search(r"the email by (.+?) and", v.instruction).group(1).strip()
        if "Primary" in v.text:  # the inbox list
            for e in v.elements:
                if e.tag == "div" and e.text.split(" ")[0] == sender:
                    return click(e)
            raise PolicyStuck(f"no email by {sender!r} in the inbox")
        return click(_email_icons(v)[icon])

    return policy


def phone_book(v: View) -> str:
    """phone-book: page through the contacts (``>``) to the named one, click the field asked for."""
    person = re.search(r"Find (.+?) in the contact book", v.instruction).group(1).strip()
    field = next(f for f in ("phone", "email", "address") if f"their {f}" in v.instruction)
    shown = re.search(r"<h2>([^<]*)</h2>", v.html)
    if shown and shown.group(1).strip() == person:
        label = {"phone": "Phone:", "email": "Email:", "address": "Address:"}[field]
        return click(int(re.search(rf'{label}\s*<a id="(\d+)"', v.html).group(1)))
    return click(v.by_text(">", "a"))


def terminal(v: View) -> str:
    """terminal: ``ls``, then ``rm`` the file the instruction describes (its extension, or none)."""
    last = v.past[-1] if v.past else None
    if last is not None and last.kind is ActionKind.type:
        return press_enter()  # a typed command runs on Enter
    box = v.tagged("input")[0]
    listing = re.search(r"user\$ ls (.*?) user\$", v.text)
    if listing is None:
        return type_into(box, "ls")
    files = listing.group(1).split()
    ext = re.search(r"extension (\.[\w.]*\w)", v.instruction)  # .json, .tar.gz
    picks = [f for f in files if (f.endswith(ext.group(1)) if ext else "." not in f)]
    if not picks:
        raise PolicyStuck("no file matches the instruction")
    return type_into(box, f"rm {picks[0]}")


POLICIES = {
    "search-engine": search_engine,
    "email-inbox-delete": email_icon(1),
    "email-inbox-important": email_icon(2),
    "phone-book": phone_book,
    "terminal": terminal,
}
