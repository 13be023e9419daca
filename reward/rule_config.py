"""The schema of a task's ``eval`` object (WebArena's task-config shape plus our ``state_check``).

:func:`parse_eval_config` validates a raw dict and returns an :class:`EvalSpec`; anything wrong
raises :class:`RuleConfigError` naming the task and the offending key. Suites call it when they
load tasks, so that a broken config is refused at start-up rather than mid-run.

```
{"eval_types": ["string_match", "url_match", "program_html", "state_check"],   # one or more
 "reference_answers": {"exact_match": "...", "must_include": [...], "fuzzy_match": [...] | "N/A"},
 "string_note": "why the task cannot be done (for fuzzy_match N/A)",
 "reference_url": "URL |OR| URL", "url_note": "GOLD in PRED",
 "program_html": [{"url": "last" | URL | "func:helper(...)", "locator": "" | "document...." | "func:helper(...)",
                   "required_contents": {"exact_match": "..."} | {"must_include": [...]} | {"fuzzy_match": [...]},
                   "prep_actions": ["js", ...]}],
 "state_check": [{"site": "shop", "sql": "SELECT ...", "required_contents": {...}}]}
```
"""

from __future__ import annotations

import ast
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EVAL_TYPES = ("string_match", "url_match", "program_html", "state_check")
URL_NOTES = ("GOLD in PRED",)
# helpers a program_html ``url`` or ``locator`` may call as ``func:name(args)``
URL_HELPERS = ("shopping_get_latest_order_url", "reddit_get_post_url")
LOCATOR_HELPERS = ("gitlab_get_project_memeber_role",)
UNSUPPORTED_HELPERS = {
    "shopping_get_sku_latest_review_author": "it reads Magento's REST API with admin credentials",
    "shopping_get_sku_latest_review_rating": "it reads Magento's REST API with admin credentials",
}
PAGE_ARG = "__page__"
LAST_URL_ARG = "__last_url__"


class RuleConfigError(ValueError):
    """A task's eval config that cannot be evaluated; the message names the task and the key."""


def _refuse_empty_lists(model: BaseModel) -> None:
    """An empty reference list would pass any answer: refuse it."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, list) and not value:
            raise ValueError(f"{name} is an empty list: give at least one reference, or leave the key out")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReferenceAnswers(_Strict):
    """string_match references; each given one must hold (the score is their product)."""

    exact_match: str | None = Field(None, description="The answer, normalised, must equal this.")
    must_include: list[str] | str | None = Field(None, description="Each item must occur in the answer; "
                                                 "'a |OR| b' accepts either.")
    fuzzy_match: list[str] | Literal["N/A"] | None = Field(
        None, description="Each item must mean the same as the answer (the judge decides); 'N/A': the task "
        "is unachievable and the answer must be N/A or give the reason in string_note.")

    @model_validator(mode="after")
    def _no_empty_lists(self):
        _refuse_empty_lists(self)
        return self


class RequiredContents(_Strict):
    """What one program_html or state_check target's text must hold: exactly one of the three."""

    exact_match: str | None = Field(None, description="The text, normalised, equals this.")
    must_include: list[str] | str | None = Field(None, description="Each item occurs in the text ('a |OR| b').")
    fuzzy_match: list[str] | None = Field(None, description="The text means these (joined), as the judge decides.")

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("exact_match", "must_include", "fuzzy_match") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"required_contents needs exactly one of exact_match, must_include, fuzzy_match (got {given or 'none'})")
        _refuse_empty_lists(self)
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("exact_match", "must_include", "fuzzy_match") if getattr(self, k) is not None)


class HelperCall(BaseModel):
    """``func:name(arg, ...)`` parsed without evaluating it: string literals and ``__page__``."""

    name: str
    args: list[str]


class HtmlTarget(_Strict):
    url: str = Field(..., description="'last' (the agent's final page), a URL, or func:<url helper>(...).")
    locator: str = Field(..., description="'' (the page's HTML), a JS expression starting with document. or "
                         "[...document., or func:<locator helper>(__page__, ...).")
    required_contents: RequiredContents
    prep_actions: list[str] = Field(default_factory=list, description="JS run before the locator; errors ignored.")

    @model_validator(mode="after")
    def _known_forms(self):
        if self.url.startswith("func:"):
            helper_call(self.url, URL_HELPERS)
        locator = self.locator.strip()
        if locator.startswith("func:"):
            helper_call(locator, LOCATOR_HELPERS)
        elif locator and not locator.startswith(("document.", "[...document.")):
            raise ValueError(f"unknown locator {locator[:80]!r}: use '', a JS expression starting with 'document.' "
                             "or '[...document.', or func:<helper>(...)")
        return self


class StateCheck(_Strict):
    site: str = Field(..., description="The sandbox site whose episode state the query reads.")
    sql: str = Field(..., description="A read-only query; its rows, as text, are matched.")
    required_contents: RequiredContents


class EvalSpec(BaseModel):
    """A task's ``eval`` object. Other keys WebArena writes (annotations, notes) are kept and ignored."""

    model_config = ConfigDict(extra="allow", frozen=True)

    eval_types: list[str] = Field(..., min_length=1)
    reference_answers: ReferenceAnswers | None = None
    string_note: str | None = None
    reference_url: str | None = None
    url_note: str | None = None
    program_html: list[HtmlTarget] = Field(default_factory=list)
    state_check: list[StateCheck] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_empty(cls, data: Any):
        if isinstance(data, dict):
            data = {**data, **{k: [] for k in ("program_html", "state_check") if data.get(k) is None and k in data}}
        return data

    @model_validator(mode="after")
    def _each_type_has_its_section(self):
        for kind in self.eval_types:
            if kind not in EVAL_TYPES:
                raise ValueError(f"unknown eval type '{kind}'; known: {', '.join(EVAL_TYPES)}")
        answers = self.reference_answers
        if "string_match" in self.eval_types and (answers is None or not answers.model_dump(exclude_none=True)):
            raise ValueError("string_match needs reference_answers with exact_match, must_include or fuzzy_match")
        if "url_match" in self.eval_types:
            if not (self.reference_url or "").strip():
                raise ValueError("url_match needs a reference_url")
            if (self.url_note or URL_NOTES[0]) not in URL_NOTES:
                raise ValueError(f"unknown url_note '{self.url_note}'; known: {', '.join(URL_NOTES)}")
        for kind in ("program_html", "state_check"):
            if kind in self.eval_types and not getattr(self, kind):
                raise ValueError(f"{kind} is among eval_types but the config has no {kind} entries")
        return self


def helper_call(text: str, allowed: tuple[str, ...]) -> HelperCall:
    """Parse ``func:name('a', __page__)``; raises ValueError for anything else or an unknown helper."""
    source = text.strip().removeprefix("func:")
    try:
        call = ast.parse(source, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse helper call {text!r}") from None
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name) or call.keywords:
        raise ValueError(f"helper call {text!r} must look like func:name('arg', ...)")
    name = call.func.id
    if name in UNSUPPORTED_HELPERS:
        raise ValueError(f"helper {name} is not supported ({UNSUPPORTED_HELPERS[name]}); supported here: {', '.join(allowed)}")
    if name not in allowed:
        raise ValueError(f"unknown helper {name!r}; supported here: {', '.join(allowed)}")
    args = []
    for arg in call.args:
        if isinstance(arg, ast.Name) and arg.id == PAGE_ARG:
            args.append(PAGE_ARG)
        elif isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            args.append(arg.value)
        else:
            raise ValueError(f"helper call {text!r}: arguments must be string literals or {PAGE_ARG}")
    return HelperCall(name=name, args=args)


def parse_eval_config(eval_config: Any, task_id: str | None = None) -> EvalSpec:
    """Validate a raw ``eval`` object; :class:`RuleConfigError` names the task and the bad key."""
    who = f"task {task_id}" if task_id else "eval config"
    if isinstance(eval_config, EvalSpec):
        return eval_config
    if not isinstance(eval_config, dict):
        raise RuleConfigError(f"{who}: the eval config must be a JSON object, not {type(eval_config).__name__}")
    try:
        return EvalSpec.model_validate(eval_config)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise RuleConfigError(f"{who}: invalid eval config: " + "; ".join(problems)) from None
