"""Tasks solved by clicking what the instruction names: buttons, links, tabs, sections, menus, widgets."""

from __future__ import annotations

import re

from envpool.suites.miniwob_scripts.view import PolicyStuck, View, click, hover, ordinal, quoted
from webrl.types import ActionKind


def click_button(v: View) -> str:
    """click-button, unicode-test: the button whose label is quoted (any script)."""
    return click(v.by_text(quoted(v.instruction)[0], "button"))


def click_link(v: View) -> str:
    """click-link: the link (any element) whose text is quoted."""
    return click(v.by_text(quoted(v.instruction)[0]))


def click_test(v: View) -> str:
    """click-test: the one button."""
    return click(v.by_text("Click Me!", "button"))


def click_named_button(v: View) -> str:
    """click-test-2, click-test-transfer: "Click button ONE." -> the button ONE."""
    return click(v.by_text(re.search(r"button (\w+)", v.instruction).group(1), "button"))


def click_button_sequence(v: View) -> str:
    """click-button-sequence: each button the instruction names, in order, each once."""
    names = re.findall(r"button (\w+)", v.instruction)
    for name in names:
        button = v.by_text(name, "button")
        if not v.clicked(button.id):
            return click(button)
    raise PolicyStuck("every named button is already clicked")


def _close_button(v: View) -> str:
    """The dialog's close button (its ``title`` says Close)."""
    close = next((e for e in v.elements if e.attrs.get("title") == "Close"), None)
    if close is None:
        raise PolicyStuck("no dialog close button")
    return click(close)


def click_dialog(v: View) -> str:
    """click-dialog: the dialog's close button."""
    return _close_button(v)


def click_dialog_2(v: View) -> str:
    """click-dialog-2: the dialog button labelled as quoted ("x" is the close button)."""
    label = quoted(v.instruction)[0]
    return _close_button(v) if label.lower() == "x" else click(v.by_text(label, "button"))


def click_tab(v: View) -> str:
    """click-tab: the tab the instruction numbers."""
    return click(v.by_text(re.search(r"(Tab #\d+)", v.instruction).group(1), "a"))


def click_hidden_link(v: View) -> str:
    """click-tab-2*, click-collapsible-2: the quoted link if it is showing, else open the next tab or
    section not opened yet (both are ``role=tab`` headers: ``<li>`` tabs, ``<h3>`` sections)."""
    target = quoted(v.instruction)[0]
    headers = [e for e in v.elements if e.attrs.get("role") == "tab" and e.tag in ("li", "h3")]
    opened = {a.element for a in v.past if a.kind is ActionKind.click}
    link = next((e for e in v.elements if e.text.strip() == target and e.tag in ("span", "a")
                 and e.attrs.get("role") != "presentation"), None)
    if link is not None:
        return click(link)
    for header in headers:
        if header.id not in opened:
            return click(header)
    raise PolicyStuck(f"link {target!r} not found in any tab or section")


def click_collapsible(v: View) -> str:
    """click-collapsible: open the section, then press Submit."""
    header = next(e for e in v.elements if e.tag == "h3")
    if not v.clicked(header.id):
        return click(header)
    return click(v.button("Submit"))


def focus_text(v: View) -> str:
    """focus-text: the one text input."""
    return click(v.tagged("input")[0])


def focus_text_2(v: View) -> str:
    """focus-text-2: the n-th text input."""
    return click(v.tagged("input")[ordinal(v.instruction) - 1])


WIDGETS = {  # the instruction's widget names -> (tag, input type or None)
    "text": ("input", ("input", "text")),
    "textarea": ("textarea", None),
    "button": ("button", None),
    "radio": ("input", ("radio",)),
    "checkbox": ("input", ("checkbox",)),
}


def click_widget(v: View) -> str:
    """click-widget: the first widget of the quoted kind (text field, textarea, button, radio, checkbox)."""
    tag, types = WIDGETS[quoted(v.instruction)[0]]
    for e in v.elements:
        if e.tag == tag and (types is None or e.attrs.get("type", "") in types):
            return click(e)
    raise PolicyStuck(f"no {quoted(v.instruction)[0]} widget")


SVG_SHAPES = {"circle": "Circle", "rect": "Rectangle", "polygon": "Triangle"}


def identify_shape(v: View) -> str:
    """identify-shape: name the figure: its SVG tag (circle, rect, polygon), or a letter or digit."""
    figure = v.elements[0]
    if figure.tag == "text":
        label = "Number" if figure.text.strip().isdigit() else "Letter"
    else:
        label = SVG_SHAPES[figure.tag]
    return click(v.button(label))


def click_menu(v: View) -> str:
    """click-menu: hover down the path ``A>B>C`` and click its leaf. A submenu opens a moment after the
    pointer rests on its parent, so while the next item is not showing, the policy hovers the parent again."""
    path = [p.strip() for p in re.match(r"Select (.*)", v.instruction).group(1).split(">")]
    for depth in range(len(path) - 1, -1, -1):  # the deepest item of the path that is showing
        item = v.find_text(path[depth], "div")
        if item is not None:
            return click(item) if depth == len(path) - 1 else hover(item)
    raise PolicyStuck(f"menu item {path[0]!r} not found")
