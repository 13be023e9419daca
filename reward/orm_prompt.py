"""The ORM's prompt: the task instruction, the agent's actions as text and the final page, rendered
through the model's own chat template like the agent's prompt (actors/prompt.py), ending where the
model writes its answer (YES or NO).

Length budget, in the agent prompt's order: the oldest actions are left out first (the end of the
history stays, with a line saying how many were left out), then the end of the final page is cut (its
start stays). The result is the agent prompt's ``Prompt``: text, token ids, what was dropped.
"""

from __future__ import annotations

from actors.prompt import Prompt, fit_prompt
from webrl.types import Observation, Trajectory

ORM_SYSTEM_PROMPT = """You judge whether a web agent completed its task. You are given the task instruction, \
the actions the agent took (in our action grammar: do(action=..., element=...) or exit(message=...)), the \
agent's final answer if it gave one, and the final web page as simplified HTML. Answer with one word: {yes} if \
the task was completed, {no} if it was not."""

NO_PAGE = "(no page: the episode ended before a page was shown)"


def action_history(traj: Trajectory) -> list[str]:
    """One line per step: its number and the agent's raw output (line breaks folded), and the error the
    environment reported for it, if any."""
    lines = []
    for i, step in enumerate(traj.steps):
        text = " | ".join(part.strip() for part in step.action_text.strip().splitlines() if part.strip()) or "(empty output)"
        if step.action.error:
            text += f"  [invalid: {step.action.error}]"
        lines.append(f"{i + 1}. {text}")
    return lines


def final_page(traj: Trajectory) -> Observation | None:
    """The page the episode ended on (the last one seen when the final observation is missing)."""
    if traj.final_observation is not None:
        return traj.final_observation
    return traj.steps[-1].observation if traj.steps else None


def orm_messages(instruction: str, actions: list[str], answer: str | None, page: Observation | None, *,
                 yes: str, no: str, skip: int = 0, page_html: str | None = None) -> list[dict]:
    """Chat messages asking for the verdict; ``skip`` leaves out the oldest actions, ``page_html``
    replaces the page (cut to fit)."""
    kept = actions[skip:]
    history = ([f"({skip} earlier actions are left out.)"] if skip else []) + kept
    html = NO_PAGE if page is None else (page.html if page_html is None else page_html)
    parts = [
        f"Task Instruction: {instruction}",
        f"Actions ({len(actions)}):\n" + ("\n".join(history) if history else "(none)"),
        f"Final answer: {answer}" if answer else "Final answer: (none)",
        f"Final page ({page.url}):\n{html}" if page is not None else f"Final page:\n{html}",
        f"Was the task completed? Answer {yes} or {no}.",
    ]
    return [{"role": "system", "content": ORM_SYSTEM_PROMPT.format(yes=yes, no=no)},
            {"role": "user", "content": "\n\n".join(parts)}]


def orm_prompt(tokenizer, traj: Trajectory, max_tokens: int, *, yes: str = "YES", no: str = "NO") -> Prompt:
    """The ORM prompt of a trajectory (chat template applied, generation prompt added) within
    ``max_tokens``; ``dropped_rounds`` counts the actions left out."""
    actions, page = action_history(traj), final_page(traj)
    return fit_prompt(
        tokenizer, lambda skip, html: orm_messages(traj.instruction, actions, traj.answer, page, yes=yes, no=no,
                                                   skip=skip, page_html=html),
        len(actions), page.html if page is not None else "", max_tokens,
        "the ORM prompt is {n} tokens even without any action or page; the budget of {budget} tokens is too small "
        "(raise orm.budget_tokens)")
