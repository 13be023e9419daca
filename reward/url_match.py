"""WebArena's url_match, rule ``GOLD in PRED``, as a pure function.

Both URLs lose trailing slashes (of the whole URL: a slash before a query stays), then split into a base (``host[:port]/path``, scheme dropped) and
query parameters (decoded, blank values dropped). The page's URL matches when

- one reference's base occurs in the page's base (a substring: ``host/f/books`` matches
  ``host/f/books/12/a-post``), and
- for every query parameter any reference names, the page carries one of the values the references
  give it (parameters the references do not name are ignored).

Alternatives are separated by ``|OR|``; their parameters are pooled, as WebArena pools them.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from reward.text_match import alternatives


def split_url(url: str) -> tuple[str, dict[str, list[str]]]:
    """``http://h:1/a/b/?x=1&x=2`` -> ``("h:1/a/b", {"x": ["1", "2"]})``."""
    parts = urlsplit(url.strip().rstrip("/"))
    return parts.netloc + parts.path, parse_qs(parts.query)


def url_match(reference_url: str, page_url: str) -> tuple[bool, str]:
    """(matched, why) for the page's URL against ``reference_url`` (``|OR|`` alternatives)."""
    refs = [split_url(u) for u in alternatives(reference_url)]
    base, query = split_url(page_url)
    if not any(ref_base in base for ref_base, _ in refs):
        return False, f"page {page_url} is not under {' or '.join(b for b, _ in refs)}"
    wanted: dict[str, set[str]] = {}
    for _, ref_query in refs:
        for key, values in ref_query.items():
            wanted.setdefault(key, set()).update(values)
    for key, values in wanted.items():
        if not values & set(query.get(key, [])):
            have = query.get(key)
            return False, (f"query parameter {key!r} is {have} on page {page_url}, wanted one of {sorted(values)}"
                           if have else f"page {page_url} lacks query parameter {key}={' or '.join(sorted(values))}")
    return True, f"page {page_url} matches {reference_url}"
