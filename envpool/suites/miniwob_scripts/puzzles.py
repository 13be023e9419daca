"""Tasks with a small problem to work out from the page: arithmetic, parity, a guessing game, the
cheapest ticket, a spinner to step to a value."""

from __future__ import annotations

import re

from envpool.suites.miniwob_scripts.view import PolicyStuck, View, bbox, click, fill_then, type_into


def _after(text: str, marker: str) -> str:
    return text[text.index(marker) + len(marker):] if marker in text else text


def simple_arithmetic(v: View) -> str:
    """simple-arithmetic: ``a op b =`` with op one of + - x."""
    a, op, b = re.search(r"(-?\d+)\s*([+\-x*])\s*(-?\d+)\s*=", _after(v.text, "when done.")).groups()
    a, b = int(a), int(b)
    answer = a + b if op == "+" else a - b if op == "-" else a * b
    return fill_then([(v.text_inputs()[0], str(answer))], v.button("Submit"))


def simple_algebra(v: View) -> str:
    """simple-algebra: ``x op d = r`` or ``d op x = r``, solved for x."""
    left, right = re.search(r"([x\d]+\s*[+-]\s*[x\d]+)\s*=\s*(-?\d+)", _after(v.text, "when done.")).groups()
    a, op, b = re.match(r"([x\d]+)\s*([+-])\s*([x\d]+)", left).groups()
    r = int(right)
    if op == "+":
        x = r - int(b if a == "x" else a)
    elif a == "x":  # x - d = r
        x = r + int(b)
    else:  # d - x = r
        x = int(a) - r
    return fill_then([(v.text_inputs()[0], str(x))], v.button("Submit"))


def odd_or_even(v: View) -> str:
    """odd-or-even: for each number between an Odd and an Even button, click the right one once; Submit."""
    rows = re.findall(r'<button id="(\d+)"[^>]*>Odd</button>\s*(-?\d+)\s*<button id="(\d+)"[^>]*>Even</button>', v.html)
    if not rows:
        raise PolicyStuck("no Odd/number/Even rows")
    for odd_id, number, even_id in rows:
        choice = int(odd_id) if int(number) % 2 else int(even_id)
        if not v.clicked(choice):
            return click(choice)
    return click(v.button("Submit"))


def guess_number(v: View) -> str:
    """guess-number: bisect 0-9. The page shows only the last guess's feedback; the earlier ones
    follow from the guesses themselves (a bisection guesses higher next exactly when told higher)."""
    box = v.text_inputs()[0]
    feedback = re.search(r"The number is (higher|lower) than (-?\d+)", v.text)
    guesses = [int(g) for g in v.typed() if g.lstrip("-").isdigit()]
    value = box.attrs.get("value", "")
    if guesses and value == str(guesses[-1]) and not (feedback and feedback.group(2) == value):
        return click(v.button("Submit"))  # typed, not submitted yet
    lo, hi = 0, 9
    for g, nxt in zip(guesses, guesses[1:]):
        lo, hi = (g + 1, hi) if nxt > g else (lo, g - 1)
    if feedback:
        g = int(feedback.group(2))
        lo, hi = (g + 1, hi) if feedback.group(1) == "higher" else (lo, g - 1)
    if lo > hi:
        raise PolicyStuck(f"no number left between the bounds ({lo}, {hi})")
    return type_into(box, str((lo + hi) // 2))


def generate_number(v: View) -> str:
    """generate-number: press Generate until the number shown meets the condition, then Submit."""
    shown = re.search(r"(-?\d+|-)\s*<button id=\"\d+\"[^>]*>Generate</button>", v.html).group(1)
    if shown != "-":
        n, ins = int(shown), v.instruction
        less = re.search(r"less than (\d+)", ins)
        more = re.search(r"greater than (\d+)", ins)
        ok = (n < int(less.group(1)) if less else n > int(more.group(1)) if more
              else n % 2 == 1 if "odd" in ins else n % 2 == 0)
        if ok:
            return click(v.button("Submit"))
    return click(v.button("Generate"))


def _minutes(duration: str) -> int:
    h, m = re.match(r"(\d+)h (\d+)m", duration).groups()
    return int(h) * 60 + int(m)


def buy_ticket(v: View) -> str:
    """buy-ticket: the cheapest, most expensive, shortest or longest of the listed flights."""
    flights = [(_minutes(d), int(price), int(element)) for d, element, price in re.findall(
        r"Duration:</label>\s*(\d+h \d+m)\s*<button id=\"(\d+)\"[^>]*>Book for \$(\d+)</button>", v.html)]
    if not flights:
        raise PolicyStuck("no flights listed")
    ins = v.instruction
    key = (lambda f: f[1]) if "cost" in ins else (lambda f: f[0])
    pick = max(flights, key=key) if ("longest" in ins or "most expensive" in ins) else min(flights, key=key)
    return click(pick[2])


def use_spinner(v: View) -> str:
    """use-spinner: the spinner ignores typing; click its upper arrow to count up, the lower to count
    down, until it shows the number, then Submit."""
    target = int(re.search(r"Select (-?\d+)", v.instruction).group(1))
    spinner = next(e for e in v.elements if e.attrs.get("role") == "spinbutton")
    arrows = [e for e in v.elements if e.tag == "a" and e.attrs.get("role") == "button"]
    arrows.sort(key=lambda e: bbox(e)[1])  # top to bottom: up, then down
    value = int(spinner.attrs.get("value") or 0)
    if value == target:
        return click(v.button("Submit"))
    return click(arrows[0] if value < target else arrows[-1])
