"""The random-action floor (envpool/random_policy.py): every action parses, fits the element's kind, and a
seed gives the same actions again; saving its episodes as demonstrations is refused."""

from __future__ import annotations

import random

import pytest

from envpool.actions import parse_action
from envpool.random_policy import random_action
from webrl.types import ActionKind

PAGE = ('<p><input id="0" type="text"></input></p> <input id="1" type="checkbox"></input> '
        '<select id="2"><option selected="true">Red</option> <option>Blue</option></select> '
        '<textarea id="3"></textarea> <button id="4">Submit</button>')
INSTRUCTION = 'Enter "kate" and pick Blue'


def test_actions_parse_and_fit_the_element_kind():
    rng = random.Random(0)
    actions = [parse_action(random_action(INSTRUCTION, PAGE, rng)) for _ in range(200)]
    by_element = {}
    for a in actions:
        assert a.kind is not ActionKind.invalid
        by_element.setdefault(a.element, set()).add(a.kind)
    assert by_element == {0: {ActionKind.type}, 1: {ActionKind.click}, 2: {ActionKind.select}, 3: {ActionKind.type},
                          4: {ActionKind.click}}  # every element drawn, each with its kind's action
    typed = {a.argument for a in actions if a.kind is ActionKind.type}
    assert "kate" in typed and typed <= {"kate", "Enter", "and", "pick", "Blue"}
    assert {a.argument for a in actions if a.kind is ActionKind.select} == {"Red", "Blue"}


def test_a_seed_repeats_and_a_page_without_elements_scrolls():
    draw = lambda seed: [random_action(INSTRUCTION, PAGE, random.Random(seed)) for _ in range(5)]  # noqa: E731
    assert draw(1) == draw(1)
    assert parse_action(random_action("x", "<p>no elements</p>", random.Random(0))).kind is ActionKind.scroll_down


def test_random_episodes_are_not_demonstrations(capsys):
    from webrl.cli import main

    assert main(["env", "demo", "--policy", "random", "--save", "/tmp/never"]) == 2
    assert "not demonstrations" in capsys.readouterr().out


@pytest.mark.browser
def test_the_floor_is_a_measurement_whatever_its_success(tmp_path):
    """`webrl env demo --policy random` reports the floor and exits 0 (the scripted policies exit 1 when one fails)."""
    import json

    import ray

    from webrl.cli import main

    report = tmp_path / "floor.json"
    try:
        assert main(["env", "demo", "--policy", "random", "--tasks", "login-user", "--seeds", "2", "--config", "tiny",
                     "--report", str(report)]) == 0
    finally:
        ray.shutdown()  # the command starts a local cluster in this process; the next tests start their own
    out = json.loads(report.read_text())
    assert out["episodes"] == 2 and out["success_rate"] < 1.0  # a random word typed twice is not kate's login
