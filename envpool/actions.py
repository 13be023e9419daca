"""The WebRL action grammar: parse model text into an :class:`Action`, and write one back.

Grammar (one call, optionally preceded by ``# Element: ...`` / ``# Note: ...`` comment lines)::

    do(action="Click", element="12")            do(action="Type", argument="kate", element="4")
    do(action="Search", argument="..", element="13")  do(action="Hover", element="5")
    do(action="Scroll Up")  do(action="Scroll Down")  do(action="Press Enter")
    do(action="Select Dropdown Option", argument="..", element="20")
    do(action="Go Backward")  do(action="Go Forward")  exit(message="...")

The text is tokenized by hand, never evaluated. :func:`parse_action` never raises: text that is not
a valid action becomes ``Action(kind=invalid, error=<reason>)`` for the agent to read next step.
"""

from __future__ import annotations

import re

from webrl.types import Action, ActionKind

# canonical names as the grammar writes them, and the kinds they map to
ACTION_NAMES: dict[str, ActionKind] = {
    "Click": ActionKind.click,
    "Type": ActionKind.type,
    "Search": ActionKind.search,
    "Hover": ActionKind.hover,
    "Scroll Up": ActionKind.scroll_up,
    "Scroll Down": ActionKind.scroll_down,
    "Press Enter": ActionKind.press_enter,
    "Select Dropdown Option": ActionKind.select,
    "Go Backward": ActionKind.go_back,
    "Go Forward": ActionKind.go_forward,
}
_ALIASES = {"select": ActionKind.select, "go back": ActionKind.go_back}
_BY_KEY = {name.lower(): kind for name, kind in ACTION_NAMES.items()} | _ALIASES
CANONICAL = {kind: name for name, kind in ACTION_NAMES.items()}

# which keyword arguments each kind takes (besides `action`), and which of them it needs
SIGNATURE: dict[ActionKind, set[str]] = {
    ActionKind.click: {"element"},
    ActionKind.hover: {"element"},
    ActionKind.type: {"element", "argument"},
    ActionKind.search: {"element", "argument"},
    ActionKind.select: {"element", "argument"},
    ActionKind.scroll_up: set(),
    ActionKind.scroll_down: set(),
    ActionKind.press_enter: set(),
    ActionKind.go_back: set(),
    ActionKind.go_forward: set(),
}
# the escapes format_action writes inside quotes (each is also the character's escape in a regex class)
QUOTE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r"}
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_IDENT = re.compile(r"[A-Za-z_]\w*")
_BARE = re.compile(r"[^,)\s]+")
_FENCE = re.compile(r"^```(?:[\w-]+[ \t]*\n|[ \t]*\n?)|\n?```\s*$")  # ```lang\n ... ``` or ```...```
MAX_ACTION_CHARS = 20_000


class _ParseError(Exception):
    pass


def _kwargs(text: str, pos: int) -> tuple[dict[str, str], int]:
    """Read ``key=value, ...)`` from ``text[pos:]``; return the arguments and the index after ``)``."""
    args: dict[str, str] = {}
    n = len(text)

    def skip_ws(i: int) -> int:
        while i < n and text[i].isspace():
            i += 1
        return i

    i = skip_ws(pos)
    while True:
        if i >= n:
            raise _ParseError("missing closing ')'")
        if text[i] == ")":
            return args, i + 1
        m = _IDENT.match(text, i)
        if not m:
            raise _ParseError(f"expected a keyword argument like element=\"12\" at {text[i:i + 20]!r}")
        key = m.group(0).lower()
        i = skip_ws(m.end())
        if i >= n or text[i] != "=":
            raise _ParseError(f"expected '=' after '{m.group(0)}'")
        i = skip_ws(i + 1)
        if i < n and text[i] in "\"'":
            quote, i, out = text[i], i + 1, []
            while True:
                if i >= n:
                    raise _ParseError(f"unterminated string for '{key}'")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    out.append(_ESCAPES.get(text[i + 1], "\\" + text[i + 1]))
                    i += 2
                elif c == quote:
                    i += 1
                    break
                else:
                    out.append(c)
                    i += 1
            value = "".join(out)
        else:
            m = _BARE.match(text, i)
            if not m:
                raise _ParseError(f"missing value for '{key}'")
            value, i = m.group(0), m.end()
        if key in args:
            raise _ParseError(f"'{key}' given twice")
        args[key] = value
        i = skip_ws(i)
        if i < n and text[i] == ",":
            i = skip_ws(i + 1)
        elif i < n and text[i] != ")":
            raise _ParseError(f"expected ',' or ')' after the value of '{key}'")


def _drop_comments(text: str) -> str:
    # split on "\n" only: other line breaks (\r, \u2028, ...) may sit inside a quoted argument
    lines = text.split("\n")
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("#")):
        lines.pop(0)
    return "\n".join(lines).strip()


def _strip(text: str) -> str:
    """Drop leading comment lines (``# Element: ...``, ``# Note: ...``) and code fences, in either order."""
    return _drop_comments(_FENCE.sub("", _drop_comments(text.strip())).strip())


def _build(func: str, args: dict[str, str]) -> Action:
    if func == "exit":
        extra = set(args) - {"message"}
        if extra:
            raise _ParseError(f"exit takes only message=, not {', '.join(sorted(extra))}")
        if "message" not in args:
            raise _ParseError('exit needs message=, e.g. exit(message="done")')
        return Action(kind=ActionKind.exit, argument=args["message"])
    if "action" not in args:
        raise _ParseError('do(...) needs action=, e.g. do(action="Click", element="3")')
    name = re.sub(r"[\s_-]+", " ", args.pop("action")).strip().lower()
    kind = _BY_KEY.get(name)
    if kind is None:
        raise _ParseError(f"unknown action {name!r}; valid: {', '.join(ACTION_NAMES)}")
    wanted = SIGNATURE[kind]
    extra, missing = set(args) - wanted, wanted - set(args)
    if extra:
        raise _ParseError(f"{CANONICAL[kind]} does not take {', '.join(sorted(extra))}")
    if missing:
        raise _ParseError(f"{CANONICAL[kind]} needs {', '.join(sorted(missing))}")
    element = None
    if "element" in args:
        raw = args["element"].strip()
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 12):
            raise _ParseError(f"element must be a number like element=\"12\", not {args['element']!r}")
        element = int(raw)
    return Action(kind=kind, element=element, argument=args.get("argument"))


def parse_action(text: str) -> Action:
    """Parse one model output. Never raises; malformed text gives ``kind=invalid`` with the reason."""
    raw = text if isinstance(text, str) else repr(text)
    try:
        if not isinstance(text, str):
            raise _ParseError(f"expected text, got {type(text).__name__}")
        if len(text) > MAX_ACTION_CHARS:
            raise _ParseError(f"output is {len(text)} characters; an action is one short line")
        body = _strip(text)
        if not body:
            raise _ParseError('no action found; answer with one line such as do(action="Click", element="3")')
        m = re.match(r"(do|exit)\s*\(", body, flags=re.IGNORECASE)
        if not m:
            raise _ParseError(
                f"no action found at {body[:40]!r}; answer with do(action=...) or exit(message=...)"
            )
        args, end = _kwargs(body, m.end())
        rest = body[end:].strip()
        if rest:
            raise _ParseError(f"unexpected text after the action: {rest[:40]!r}; give exactly one action")
        action = _build(m.group(1).lower(), args)
        return action.model_copy(update={"raw": raw})
    except _ParseError as e:
        return Action(kind=ActionKind.invalid, raw=raw, error=str(e))


def _quote(s: str) -> str:
    return '"' + "".join(QUOTE_ESCAPES.get(c, c) for c in s) + '"'


def format_action(action: Action) -> str:
    """The canonical text of an action; ``parse_action(format_action(a))`` gives ``a`` back."""
    if action.kind is ActionKind.invalid:
        return action.raw
    if action.kind is ActionKind.exit:
        return f"exit(message={_quote(action.argument or '')})"
    parts = [f"action={_quote(CANONICAL[action.kind])}"]
    if action.argument is not None:
        parts.append(f"argument={_quote(action.argument)}")
    if action.element is not None:
        parts.append(f"element={_quote(str(action.element))}")
    return f"do({', '.join(parts)})"
