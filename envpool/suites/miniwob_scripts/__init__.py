"""Scripted policies for MiniWoB++ tasks, written in our action grammar.

Each policy reads what the agent reads (:class:`View`: the instruction, the current observation's
simplified HTML, the actions it took so far this episode) and returns the next action text, so it
works from whatever state the page is in. They prove the environment end to end (tests,
``webrl env demo``) and write the demonstrations of the supervised warm start (``webrl sft``).
Which tasks may be demonstrated is fixed by :mod:`envpool.suites.miniwob_split`.

Modules hold one family each: ``clicks`` (click what is named), ``forms`` (fill and submit),
``puzzles`` (work something out first), ``apps`` (small multi-page apps: search, email, terminal).
"""

from __future__ import annotations

from typing import Callable

from envpool.suites.miniwob_scripts import apps, clicks, forms, puzzles
from envpool.suites.miniwob_scripts.view import PolicyStuck, View

Policy = Callable[[View], str]

POLICIES: dict[str, Policy] = {
    # clicks
    "click-button": clicks.click_button,
    "click-button-sequence": clicks.click_button_sequence,
    "click-collapsible": clicks.click_collapsible,
    "click-collapsible-2": clicks.click_hidden_link,
    "click-collapsible-2-nodelay": clicks.click_hidden_link,
    "click-collapsible-nodelay": clicks.click_collapsible,
    "click-dialog": clicks.click_dialog,
    "click-dialog-2": clicks.click_dialog_2,
    "click-link": clicks.click_link,
    "click-menu": clicks.click_menu,
    "click-tab": clicks.click_tab,
    "click-tab-2": clicks.click_hidden_link,
    "click-tab-2-easy": clicks.click_hidden_link,
    "click-tab-2-medium": clicks.click_hidden_link,
    "click-tab-2-hard": clicks.click_hidden_link,
    "click-test": clicks.click_test,
    "click-test-2": clicks.click_named_button,
    "click-test-transfer": clicks.click_named_button,
    "click-widget": clicks.click_widget,
    "focus-text": clicks.focus_text,
    "focus-text-2": clicks.focus_text_2,
    "identify-shape": clicks.identify_shape,
    "unicode-test": clicks.click_button,
    # forms
    "choose-list": forms.choose_list,
    "click-checkboxes": forms.choose_boxes,
    "click-checkboxes-large": forms.choose_boxes,
    "click-checkboxes-transfer": forms.choose_boxes,
    "click-option": forms.choose_boxes,
    "enter-date": forms.enter_date,
    "enter-password": forms.enter_password,
    "enter-text": forms.enter_text,
    "enter-text-2": forms.enter_text_cased,
    "enter-text-dynamic": forms.enter_text,
    "enter-time": forms.enter_time,
    "find-word": forms.find_word,
    "login-user": forms.login_user,
    "login-user-popup": forms.login_user_popup,
    "multi-layouts": forms.movie_search,
    "multi-orderings": forms.movie_search,
    "read-table": forms.read_table,
    "read-table-2": forms.read_table_2,
    "text-transform": forms.text_transform,
    "use-autocomplete": forms.use_autocomplete,
    "use-autocomplete-nodelay": forms.use_autocomplete,
    # puzzles
    "buy-ticket": puzzles.buy_ticket,
    "generate-number": puzzles.generate_number,
    "guess-number": puzzles.guess_number,
    "odd-or-even": puzzles.odd_or_even,
    "simple-algebra": puzzles.simple_algebra,
    "simple-arithmetic": puzzles.simple_arithmetic,
    "use-spinner": puzzles.use_spinner,
    # apps
    **apps.POLICIES,
}


def scripted_action(task_id: str, instruction: str, html: str, history: list[str] | tuple[str, ...] = ()) -> str:
    """The next action of the scripted policy for ``task_id`` (``miniwob/<name>``), given the
    instruction, the current observation's HTML and the action texts taken so far this episode."""
    name = task_id.split("/", 1)[-1]
    if name not in POLICIES:
        raise KeyError(f"no scripted policy for {task_id}; scripted: {', '.join(sorted(POLICIES))}")
    return POLICIES[name](View(instruction, html, tuple(history)))


__all__ = ["POLICIES", "Policy", "PolicyStuck", "View", "scripted_action"]
