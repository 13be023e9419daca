"""Tasks solved by filling a form: text read from the instruction or the page, typed into the right
input, boxes ticked, then the form's button pressed."""

from __future__ import annotations

import html as html_lib
import re

from envpool.observation import Element
from envpool.suites.miniwob_scripts.view import (
    PolicyStuck, View, click, fill_then, hover, ordinal, quoted, select, type_into,
)


def enter_text(v: View) -> str:
    """enter-text, enter-text-dynamic: type the quoted text, press Submit."""
    return fill_then([(v.text_inputs()[0], quoted(v.instruction)[0])], v.button("Submit"))


def enter_text_cased(v: View) -> str:
    """enter-text-2: type the quoted text in the case the instruction asks for."""
    text = quoted(v.instruction)[0]
    text = text.upper() if "upper case" in v.instruction else text.lower()
    return fill_then([(v.text_inputs()[0], text)], v.button("Submit"))


def enter_password(v: View) -> str:
    """enter-password: the quoted password in both fields."""
    return fill_then([(e, quoted(v.instruction)[0]) for e in v.text_inputs()[:2]], v.button("Submit"))


def login_user(v: View) -> str:
    """login-user: username and password as quoted, then Login."""
    return fill_then(list(zip(v.text_inputs()[:2], quoted(v.instruction)[:2])), v.button("Login"))


def login_user_popup(v: View) -> str:
    """login-user-popup: as login-user (its button reads OK), first dismissing the session popup
    ("Exit to home page?") with Cancel whenever it shows."""
    if "Exit to home page?" in v.text:
        return click(v.button("Cancel"))
    return fill_then(list(zip(v.text_inputs()[:2], quoted(v.instruction)[:2])), v.button("OK"))


def enter_date(v: View) -> str:
    """enter-date: type MM/DD/YYYY into the date input (it then holds YYYY-MM-DD), press Submit."""
    mm, dd, yyyy = re.search(r"(\d+)/(\d+)/(\d+)", v.instruction).groups()
    box = v.tagged("input")[0]
    if box.attrs.get("value", "") != f"{yyyy}-{mm}-{dd}":
        return type_into(box, f"{mm}/{dd}/{yyyy}")
    return click(v.button("Submit"))


def enter_time(v: View) -> str:
    """enter-time: type hours, minutes and AM/PM into the time input (it then holds HH:MM, 24 h)."""
    h, m, half = re.search(r"(\d+):(\d+)\s*([AP]M)", v.instruction).groups()
    h24 = int(h) % 12 + (12 if half == "PM" else 0)
    box = v.tagged("input")[0]
    if box.attrs.get("value", "") != f"{h24:02d}:{m}":
        return type_into(box, f"{int(h):02d}{m}{half}")
    return click(v.button("Submit"))


def _text_before(html: str, element: Element) -> str:
    """The page text between the previous element with an id and ``element``."""
    head = html[: re.search(rf'<\w+ id="{element.id}"', html).start()]
    previous = list(re.finditer(r'<\w+ id="\d+"', head))
    if previous:
        head = head[previous[-1].start():]
        head = head[head.index(">") + 1:]
    return html_lib.unescape(re.sub(r"<[^>]+>", " ", head))


def _table(v: View) -> dict[str, str]:
    """Two-column table rows as {key: value}."""
    return {k.strip(): val.strip() for k, val in re.findall(r"<tr><td>([^<]*)</td> <td>([^<]*)</td></tr>", v.html)}


def read_table(v: View) -> str:
    """read-table: the table's value for the key the instruction names."""
    key = re.search(r"value of (.*?) into", v.instruction).group(1).strip()
    return fill_then([(v.text_inputs()[0], _table(v)[key])], v.button("Submit"))


def read_table_2(v: View) -> str:
    """read-table-2: each input is labelled ``Key:``; type the table's value for it."""
    table = _table(v)
    fields = []
    for box in v.text_inputs():
        head = v.html[: re.search(rf'<input id="{box.id}"', v.html).start()]
        label = re.findall(r"<label>([^<]*):</label>", head)
        if not label or label[-1].strip() not in table:
            raise PolicyStuck(f"no table row for the label before input {box.id}")
        fields.append((box, table[label[-1].strip()]))
    return fill_then(fields, v.button("Submit"))


MOVIE_LABELS = {"genre": "genre", "director": "director", "name": "director", "year": "year", "date": "year"}


def movie_search(v: View) -> str:
    """multi-layouts, multi-orderings: genre, director and year into the inputs their labels name.
    Labels stand before their inputs in some layouts and after them in others: when the text right
    before the first input names a field, labels come first."""
    asked = re.search(r"Search for (.*?) movies directed by (.*?) from year (\d+)", v.instruction)
    genre, director, year = asked.groups()
    wanted = {"genre": genre.strip(), "director": director.strip(), "year": year}
    body = v.html[v.html.index(year) + len(year):]
    body = body[body.index(".") + 1:]  # past the instruction
    boxes = [int(i) for i in re.findall(r'<input id="(\d+)"', body)]
    pieces = re.split(r'<input id="\d+"[^>]*></input>', body)  # text before, between and after the inputs

    def field(text: str) -> str | None:
        words = re.findall(r"[a-z]+", re.sub(r"<[^>]+>", " ", text).lower())
        return next((MOVIE_LABELS[w] for w in words if w in MOVIE_LABELS), None)

    shift = 0 if field(pieces[0]) else 1
    by_id = {e.id: e for e in v.elements}
    fields = []
    for i, box in enumerate(boxes):
        name = field(pieces[i + shift])
        if name is None:
            raise PolicyStuck(f"no label for input {box}")
        fields.append((by_id[box], wanted[name]))
    submit = next(e for e in reversed(v.elements) if e.text.strip() in ("Submit", "Search", "Go!"))
    return fill_then(fields, submit)


def find_word(v: View) -> str:
    """find-word: the paragraph's n-th word, without punctuation."""
    paragraph = re.search(r"<p>([^<]*)</p>", v.html).group(1)
    word = re.sub(r"[^\w]", "", paragraph.split()[ordinal(v.instruction) - 1])
    return fill_then([(v.text_inputs()[0], word)], v.button("Submit"))


def text_transform(v: View) -> str:
    """text-transform: the distorted characters shown above the input, joined."""
    box = v.text_inputs()[0]
    shown = _text_before(v.html, box)
    shown = shown[shown.index("press Submit.") + len("press Submit."):] if "press Submit." in shown else shown
    return fill_then([(box, re.sub(r"\s+", "", shown))], v.button("Submit"))


def _labelled_inputs(html: str) -> dict[str, tuple[int, bool]]:
    """``<label><input id=N ...> TEXT</label>`` -> {TEXT: (N, checked)}."""
    found = {}
    for m in re.finditer(r'<label><input id="(\d+)"([^>]*)></input>\s*([^<]*)</label>', html):
        found[m.group(3).strip()] = (int(m.group(1)), 'checked="true"' in m.group(2))
    return found


def _select_targets(instruction: str) -> list[str]:
    m = re.match(r"Select (.*) and click Submit", instruction)
    if not m or m.group(1).strip() == "nothing":
        return []
    return [t.strip() for t in re.split(r",\s*|\s+and\s+", m.group(1)) if t.strip()]


def choose_boxes(v: View) -> str:
    """click-checkboxes*, click-option: tick exactly the named boxes, then Submit."""
    targets = _select_targets(v.instruction)
    for label, (element, checked) in _labelled_inputs(v.html).items():
        if (label in targets) != checked:
            return click(element)
    return click(v.button("Submit"))


def choose_list(v: View) -> str:
    """choose-list: pick the named option of the dropdown, then Submit."""
    target = re.match(r"Select (.*) from the list", v.instruction).group(1)
    dropdown = v.tagged("select")[0]
    chosen = re.search(r'<option[^>]* selected="true"[^>]*>([^<]*)</option>', v.html)
    if not chosen or chosen.group(1).strip() != target:
        return select(dropdown, target)
    return click(v.button("Submit"))


def use_autocomplete(v: View) -> str:
    """use-autocomplete: type the prefix, pick the suggestion that ends as asked, then Submit."""
    parts = quoted(v.instruction)
    start, end = parts[0], parts[1] if len(parts) > 1 else ""
    box = v.text_inputs()[0]
    value = box.attrs.get("value", "")
    if value.startswith(start) and value.endswith(end) and len(value) > len(start):
        return click(v.button("Submit"))
    for e in v.elements:
        if e.tag != "input" and e.text.startswith(start) and e.text.endswith(end) and e.id != box.id:
            return click(e)
    if value != start:
        return type_into(box, start)
    return hover(box)  # the suggestions show a moment after typing: wait for them
