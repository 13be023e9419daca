"""Rule evaluators with WebArena's semantics: one code path for the sandbox sites and real WebArena.

``await evaluate(task.evaluator, answer=..., page=..., state=..., judge=...)`` scores an episode's end
state against a task's ``eval`` object (schema: :mod:`reward.rule_config`):

- ``string_match``: the agent's answer (``exit(message=...)``) against ``reference_answers``:
  ``exact_match``, ``must_include`` (each item; ``a |OR| b``), ``fuzzy_match`` (each item, by the
  judge; ``"N/A"``: the answer is N/A, or the judge finds it gives the reason in ``string_note``).
  Normalisation and matching: :mod:`reward.text_match`.
- ``url_match``: the final page's URL against ``reference_url`` (:mod:`reward.url_match`).
- ``program_html``: each target page's selected text against its ``required_contents``
  (:mod:`reward.page_checks`).
- ``state_check`` (ours): each ``{site, sql}`` query of the episode's site state, run by the
  ``state`` callable the sandbox provides, its rows as text (cells joined by tabs, rows by newlines,
  NULL as "") against ``required_contents``.

Every check scores 0 or 1; the reward is their product (WebArena multiplies its evaluators' scores,
and each evaluator its checks'). :class:`RuleResult` lists every check with a one-line reason, for
``webrl show-trajectory`` and logs. A malformed config, an unknown eval type or a missing input
(``page`` for url_match/program_html, ``state`` for state_check) raises :class:`RuleConfigError`;
what the agent did never raises.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from pydantic import BaseModel, Field

from reward import text_match
from reward.judge import FuzzyJudge, TokenOverlapJudge
from reward.page_checks import PageReadError, read_target
from reward.rule_config import EvalSpec, RequiredContents, RuleConfigError, parse_eval_config
from reward.url_match import url_match

StateQuery = Callable[[str, str], Awaitable[list[list]]]

SHOWN_CHARS = 160  # how much of an answer or page text an explanation quotes

__all__ = ["CheckResult", "RuleConfigError", "RuleResult", "StateQuery", "evaluate", "rows_text"]


class CheckResult(BaseModel):
    evaluator: str = Field(..., description="string_match, url_match, program_html or state_check.")
    check: str = Field(..., description="What was checked, e.g. must_include 'impulse duffle'.")
    passed: bool
    detail: str = Field("", description="Why it passed or failed, quoting what was compared.")

    def line(self) -> str:
        return f"[{'pass' if self.passed else 'FAIL'}] {self.evaluator}: {self.check} - {self.detail}"


class RuleResult(BaseModel):
    reward: float = Field(..., description="Product of the checks' scores: 1.0 if every check passed, else 0.0.")
    checks: list[CheckResult] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.reward == 1.0

    def explain(self) -> list[str]:
        """One line per check, in the order they ran."""
        return [c.line() for c in self.checks]


def _quote(text: str) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "...")


def rows_text(rows: list[list]) -> str:
    """A query result as text: cells joined by tabs, rows by newlines, NULL as the empty string."""
    return "\n".join("\t".join("" if cell is None else str(cell) for cell in row) for row in rows)


async def _contents_checks(evaluator: str, where: str, text: str, required: RequiredContents, judge: FuzzyJudge,
                           intent: str) -> list[CheckResult]:
    """Checks of one program_html/state_check target's text against its required_contents."""
    shown = f"{where} reads {_quote(text)}"
    if required.exact_match is not None:
        ok = text_match.exact_match(required.exact_match, text)
        return [CheckResult(evaluator=evaluator, check=f"exact_match {required.exact_match!r}", passed=ok, detail=shown)]
    if required.must_include is not None:
        return [CheckResult(evaluator=evaluator, check=f"must_include {item!r}", passed=text_match.must_include(item, text),
                            detail=shown) for item in text_match.as_list(required.must_include)]
    reference = ", ".join(required.fuzzy_match)
    ok = bool(await judge(intent, text, reference))
    return [CheckResult(evaluator=evaluator, check=f"fuzzy_match {reference!r}", passed=ok, detail=f"{shown} (judge: {judge!r})")]


async def _string_match(spec: EvalSpec, answer: str, judge: FuzzyJudge, intent: str) -> list[CheckResult]:
    # WebArena normalises the answer once here and again inside each comparison
    pred = text_match.normalize(answer)
    shown = f"answer {_quote(pred)}"
    refs = spec.reference_answers
    checks = []
    if refs.exact_match is not None:
        checks.append(CheckResult(evaluator="string_match", check=f"exact_match {refs.exact_match!r}",
                                  passed=text_match.exact_match(refs.exact_match, pred), detail=shown))
    if refs.must_include is not None:
        items = text_match.as_list(refs.must_include)
        for item in items:
            ok = text_match.must_include(item, pred, whole_word=len(items) == 1)
            checks.append(CheckResult(evaluator="string_match", check=f"must_include {item!r}", passed=ok, detail=shown))
    if refs.fuzzy_match == "N/A":
        if text_match.exact_match("N/A", pred):
            checks.append(CheckResult(evaluator="string_match", check="unachievable: answer N/A", passed=True, detail=shown))
        else:
            note = (spec.string_note or "").strip()
            ok = bool(note) and bool(await judge(intent, pred, note))
            detail = f"{shown} vs the reason {note!r} (judge: {judge!r})" if note else f"{shown} is not N/A and the task gives no reason"
            checks.append(CheckResult(evaluator="string_match", check="unachievable: N/A or the reason", passed=ok, detail=detail))
    elif refs.fuzzy_match is not None:
        for reference in refs.fuzzy_match:
            ok = bool(await judge(intent, pred, reference))
            checks.append(CheckResult(evaluator="string_match", check=f"fuzzy_match {reference!r}", passed=ok,
                                      detail=f"{shown} (judge: {judge!r})"))
    return checks


async def _program_html(spec: EvalSpec, page, judge: FuzzyJudge, intent: str, sites: dict[str, str],
                        timeout_s: float, settle_s: float) -> list[CheckResult]:
    checks = []
    for i, target in enumerate(spec.program_html):
        try:
            text, url = await read_target(page, target, sites=sites, timeout_s=timeout_s, settle_s=settle_s)
        except PageReadError as e:
            checks.append(CheckResult(evaluator="program_html", check=f"target {i} ({target.url})", passed=False, detail=str(e)))
            continue
        where = f"{url} {target.locator.strip()[:80] or '(page HTML)'}"
        checks.extend(await _contents_checks("program_html", where, text, target.required_contents, judge, intent))
    return checks


async def _state_check(spec: EvalSpec, state: StateQuery, judge: FuzzyJudge, intent: str, who: str) -> list[CheckResult]:
    checks = []
    for i, entry in enumerate(spec.state_check):
        try:
            rows = await state(entry.site, entry.sql)
        except Exception as e:  # noqa: BLE001 - a query that cannot run is the config's fault: say which
            raise RuleConfigError(f"{who}: state_check {i} on site {entry.site!r} failed: {e} "
                                  f"(query: {entry.sql!r}); check the site name and the SQL") from e
        text = rows_text(rows)
        checks.extend(await _contents_checks("state_check", f"{entry.site}: {entry.sql}", text,
                                             entry.required_contents, judge, intent))
    return checks


async def evaluate(eval_config: dict | EvalSpec, *, answer: str | None, page=None, state: StateQuery | None = None,
                   judge: FuzzyJudge | None = None, intent: str = "", task_id: str | None = None,
                   sites: dict[str, str] | None = None, timeout_s: float = 30.0, settle_s: float = 3.0) -> RuleResult:
    """Score an episode's end state against a task's ``eval`` config (see the module docstring).

    ``answer``: the agent's exit message (None: it gave none, which WebArena reads as ``""``).
    ``page``: the agent's final Playwright page. ``state``: ``async (site, sql) -> rows``.
    ``judge``: the fuzzy-match judge (default :class:`~reward.judge.TokenOverlapJudge`).
    ``intent``: the task's instruction, for the judge. ``task_id``: named in errors.
    ``sites``: site name -> base URL, for helpers that need one (the shop, for the latest order).
    ``timeout_s``: to open one program_html page; ``settle_s``: at most this long for its network to idle.
    """
    who = f"task {task_id}" if task_id else "eval config"
    spec = parse_eval_config(eval_config, task_id)
    needs_page = [t for t in ("url_match", "program_html") if t in spec.eval_types]
    if needs_page and page is None:
        raise RuleConfigError(f"{who}: {' and '.join(needs_page)} need the agent's final page (page=...)")
    if "state_check" in spec.eval_types and state is None:
        raise RuleConfigError(f"{who}: state_check needs the site state (state=async (site, sql) -> rows), "
                              "which only the sandbox suite provides")
    judge = judge or TokenOverlapJudge()
    checks: list[CheckResult] = []
    for kind in dict.fromkeys(spec.eval_types):  # each type once, in the config's order
        if kind == "string_match":
            checks += await _string_match(spec, answer or "", judge, intent)
        elif kind == "url_match":
            ok, why = url_match(spec.reference_url, page.url)
            checks.append(CheckResult(evaluator="url_match", check=f"url {spec.reference_url!r}", passed=ok, detail=why))
        elif kind == "program_html":
            checks += await _program_html(spec, page, judge, intent, sites or {}, timeout_s, settle_s)
        else:
            checks += await _state_check(spec, state, judge, intent, who)
    reward = 1.0 if all(c.passed for c in checks) else 0.0
    return RuleResult(reward=reward, checks=checks)
