"""Seed data: the word lists the sandbox sites' data is generated from (``envpool/sandbox/data/``).

Each file is read and checked when the sites start; a broken line is refused with a
:class:`SeedDataError` that names the file and the line. Files hold one record a line; ``.tsv`` files
have tab-separated fields; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
SENTIMENTS = ("positive", "neutral", "negative")


class SeedDataError(ValueError):
    """A seed-data file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Column:
    """One field of a line: ``text``, ``int`` (whole number >= 0) or ``list`` (comma-separated)."""

    name: str
    kind: str = "text"


@dataclass(frozen=True)
class Row:
    """One record with the line it came from (for errors found later, across files)."""

    path: Path
    line: int
    values: tuple

    def fail(self, problem: str) -> SeedDataError:
        return _error(self.path, self.line, problem)


def _error(path: Path, line: int, problem: str) -> SeedDataError:
    return SeedDataError(f"seed data file {path}, line {line}: {problem}; fix or delete that line")


# the files and their fields; order matters only for readability
SCHEMAS: dict[str, tuple[Column, ...]] = {
    "categories.tsv": (Column("path"), Column("description")),
    "product_types.tsv": (Column("category"), Column("noun"), Column("lowest price", "int"),
                          Column("highest price", "int"), Column("attributes", "list")),
    "attributes.tsv": (Column("name"), Column("label"), Column("values", "list")),
    "brands.tsv": (Column("top category"), Column("brands", "list")),
    "adjectives.txt": (Column("word"),),
    "product_sentences.txt": (Column("sentence"),),
    "first_names.txt": (Column("name"),),
    "last_names.txt": (Column("name"),),
    "cities.tsv": (Column("city"), Column("state"), Column("zip code"), Column("area code")),
    "streets.txt": (Column("street"),),
    "email_domains.txt": (Column("domain"),),
    "review_titles.tsv": (Column("sentiment"), Column("title")),
    "review_sentences.tsv": (Column("sentiment"), Column("sentence")),
    "forums.tsv": (Column("name"), Column("title"), Column("description"), Column("topics", "list")),
    "post_titles.txt": (Column("title"),),
    "post_sentences.txt": (Column("sentence"),),
    "comment_sentences.txt": (Column("sentence"),),
    "usernames.tsv": (Column("part"), Column("word")),
}


def _parse_field(path: Path, line: int, column: Column, raw: str):
    text = raw.strip()
    if not text:
        raise _error(path, line, f"the field '{column.name}' is empty")
    if column.kind == "int":
        if not text.isdigit():
            raise _error(path, line, f"the field '{column.name}' must be a whole number, not {text!r}")
        return int(text)
    if column.kind == "list":
        items = [item.strip() for item in text.split(",")]
        if any(not item for item in items):
            raise _error(path, line, f"the list '{column.name}' has an empty item (two commas in a row?)")
        return tuple(items)
    return text


def read_table(path: Path, columns: tuple[Column, ...]) -> list[Row]:
    """The records of one file, each field parsed and checked against ``columns``."""
    if not path.is_file():
        raise SeedDataError(f"seed data file {path} is missing; restore it (git checkout) or point "
                            "env.sandbox.data_dir at a folder that has it")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise _error(path, line, "the file is not valid UTF-8") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t") if len(columns) > 1 else [line]
        if len(columns) == 1 and "\t" in line:
            raise _error(path, number, "a one-field line has a tab in it")
        if len(parts) != len(columns):
            names = ", ".join(c.name for c in columns)
            raise _error(path, number, f"expected {len(columns)} tab-separated fields ({names}), found {len(parts)}")
        rows.append(Row(path, number, tuple(_parse_field(path, number, c, p) for c, p in zip(columns, parts))))
    if not rows:
        raise SeedDataError(f"seed data file {path} has no records; restore it (git checkout)")
    return rows


@dataclass
class SeedData:
    """Every seed-data file, read and cross-checked; ``rows[file]`` keeps the records in file order."""

    folder: Path
    rows: dict[str, list[Row]] = field(default_factory=dict)

    def values(self, name: str) -> list[tuple]:
        return [r.values for r in self.rows[name]]

    def words(self, name: str) -> list[str]:
        """A one-field file as a list of strings."""
        return [r.values[0] for r in self.rows[name]]

    def by_first(self, name: str) -> dict[str, list]:
        """A two-field file grouped by its first field (sentiment -> sentences, ...)."""
        out: dict[str, list] = {}
        for first, second in self.values(name):
            out.setdefault(first, []).append(second)
        return out


def _unique(rows: list[Row], key, what: str) -> None:
    seen: dict = {}
    for r in rows:
        k = key(r)
        if k in seen:
            raise r.fail(f"{what} {k!r} repeats line {seen[k]}")
        seen[k] = r.line


def _check_choice(rows: list[Row], index: int, allowed: tuple[str, ...], what: str) -> None:
    for r in rows:
        if r.values[index] not in allowed:
            raise r.fail(f"{what} must be one of {', '.join(allowed)}, not {r.values[index]!r}")


def _cross_check(data: SeedData) -> None:
    """Checks that span files: references resolve, names are unique, ranges make sense."""
    cats = data.rows["categories.tsv"]
    _unique(cats, lambda r: r.values[0], "category")
    known: set[str] = set()
    for r in cats:
        path = r.values[0]
        if "/" in path and path.rsplit("/", 1)[0] not in known:
            raise r.fail(f"the parent of category {path!r} must come on an earlier line")
        known.add(path)
    attrs = {r.values[0] for r in data.rows["attributes.tsv"]}
    _unique(data.rows["attributes.tsv"], lambda r: r.values[0], "attribute")
    for r in data.rows["product_types.tsv"]:
        category, _, low, high, names = r.values
        if category not in known:
            raise r.fail(f"unknown category {category!r} (categories.tsv has no such path)")
        if not 0 < low <= high:
            raise r.fail(f"the price range {low}..{high} is empty or not positive")
        for name in names:
            if name not in attrs:
                raise r.fail(f"unknown attribute {name!r} (attributes.tsv has no such name)")
    tops = {p for p in known if "/" not in p}
    for r in data.rows["brands.tsv"]:
        if r.values[0] not in tops:
            raise r.fail(f"{r.values[0]!r} is not a top-level category of categories.tsv")
    for r in data.rows["product_types.tsv"]:
        if r.values[0].split("/")[0] not in {b.values[0] for b in data.rows["brands.tsv"]}:
            raise r.fail(f"no brands for the top category of {r.values[0]!r} in brands.tsv")
    for name in ("review_titles.tsv", "review_sentences.tsv"):
        _check_choice(data.rows[name], 0, SENTIMENTS, "the sentiment")
    _check_choice(data.rows["usernames.tsv"], 0, ("first", "second"), "the part")
    for r in data.rows["cities.tsv"]:
        if not re.fullmatch(r"[A-Z]{2}", r.values[1]) or not r.values[2].isdigit() or not r.values[3].isdigit():
            raise r.fail("expected a two-letter state, a numeric zip code and a numeric area code")
    _unique(data.rows["forums.tsv"], lambda r: r.values[0], "forum")
    for r in data.rows["forums.tsv"]:
        if not re.fullmatch(r"[a-z0-9_]+", r.values[0]):
            raise r.fail(f"forum name {r.values[0]!r} may hold only a-z, 0-9 and _")
    for name in ("first_names.txt", "last_names.txt", "adjectives.txt"):
        _unique(data.rows[name], lambda r: r.values[0], "the word")
    for sentiment in SENTIMENTS:
        for name in ("review_titles.tsv", "review_sentences.tsv"):
            if sentiment not in data.by_first(name):
                raise SeedDataError(f"seed data file {data.folder / name} has no {sentiment} lines; add one")


def load_seed_data(folder: str | Path | None = None) -> SeedData:
    """Read and check every seed-data file of ``folder`` (default: the bundled ``data/``)."""
    folder = Path(folder) if folder else DATA_DIR
    if not folder.is_dir():
        raise SeedDataError(f"seed data folder {folder} does not exist; fix env.sandbox.data_dir")
    data = SeedData(folder)
    for name, columns in SCHEMAS.items():
        data.rows[name] = read_table(folder / name, columns)
    _cross_check(data)
    return data
