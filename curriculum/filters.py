"""Filters for generated tasks (paper §3.1, DESIGN.md §4): feasibility, de-duplication, the critic's
value window and the per-phase cap. Each takes candidates (``TaskEntry``: task + site) and returns
``(kept, rejected)``; every rejected entry carries its ``filter`` and a ``reason`` in words, which the
task store keeps for the phase summary.

:func:`apply_filters` runs them cheapest first: feasibility, duplicates, value (the critic needs each
task's start page), cap.
"""

from __future__ import annotations

import importlib
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from curriculum.task_store import TaskEntry
from webrl.types import Task

Rule = Callable[[str], "str | None"]  # instruction -> None (fine) or why it is infeasible
ValueFn = Callable[[list[Task]], Sequence["float | Sequence[float]"]]  # V(s0) per task: a value, or one per critic head


def _rejected(entry: TaskEntry, filter: str, reason: str) -> TaskEntry:
    return entry.model_copy(update={"filter": filter, "reason": reason})


# ---- de-duplication ------------------------------------------------------------------------------

def normalise(text: str) -> str:
    """Lower case, Unicode-folded, punctuation dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def jaccard(a: set[str], b: set[str]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


def dedup(candidates: Iterable[TaskEntry], existing: Iterable[TaskEntry], threshold: float) -> tuple[list[TaskEntry], list[TaskEntry]]:
    """Drop candidates whose normalised text equals, or whose word set is at least ``threshold``
    Jaccard-similar to, an existing task or an earlier kept candidate of the same site."""
    seen: dict[str, list[tuple[str, str, set[str]]]] = {}  # site -> (id, normalised, words)
    for e in existing:
        if e.task.instruction:
            norm = normalise(e.task.instruction)
            seen.setdefault(e.site, []).append((e.task.id, norm, set(norm.split())))
    kept, rejected = [], []
    for c in candidates:
        norm = normalise(c.task.instruction or "")
        words = set(norm.split())
        reason = None
        for other_id, other_norm, other_words in seen.get(c.site, []):
            if norm == other_norm:
                reason = f"duplicate of {other_id} (same text once normalised)"
                break
            if (score := jaccard(words, other_words)) >= threshold:
                reason = f"near-duplicate of {other_id} (word Jaccard {score:.2f} >= {threshold:.2f})"
                break
        if reason:
            rejected.append(_rejected(c, "duplicate", reason))
        else:
            kept.append(c)
            seen.setdefault(c.site, []).append((c.task.id, norm, words))
    return kept, rejected


# ---- the critic's value window -------------------------------------------------------------------

def value_verdict(value: float | Sequence[float], low: float, high: float, heads: str = "any") -> str | None:
    """None when V(s0) lies in [low, high], else why not. ``value`` is V, or one value per critic
    head; ``heads="any"`` passes when either head is in the window, ``"min"`` judges the smallest."""
    try:
        values = [float(value)]
    except (TypeError, ValueError):  # one value per head (a list, an array, a tensor)
        values = [float(v) for v in value]
    if not values or any(math.isnan(v) for v in values):
        return f"the critic gave no value ({value!r})"
    if heads == "min":
        values = [min(values)]
    elif heads != "any":
        raise ValueError(f"heads must be 'any' or 'min', got {heads!r}")
    if any(low <= v <= high for v in values):
        return None
    shown = ", ".join(f"{v:.3f}" for v in values)
    if all(v > high for v in values):
        return f"V(s0) = {shown} above {high}: too easy for the current policy"
    if all(v < low for v in values):
        return f"V(s0) = {shown} below {low}: hopeless for the current policy"
    return f"V(s0) = {shown} outside [{low}, {high}]"


def value_filter(candidates: list[TaskEntry], values: Sequence[float | Sequence[float]], low: float, high: float,
                 heads: str = "any") -> tuple[list[TaskEntry], list[TaskEntry]]:
    """Keep the candidates whose start-state value (``values[i]`` for ``candidates[i]``) is in the window."""
    if len(values) != len(candidates):
        raise ValueError(f"the critic returned {len(values)} values for {len(candidates)} tasks; it must return one "
                         "per task (a value, or one per head)")
    kept, rejected = [], []
    for c, v in zip(candidates, values):
        reason = value_verdict(v, low, high, heads)
        (kept.append(c) if reason is None else rejected.append(_rejected(c, "value", reason)))
    return kept, rejected


# ---- feasibility ---------------------------------------------------------------------------------

def length_rule(min_words: int, max_words: int) -> Rule:
    def rule(text: str) -> str | None:
        n = len(text.split())
        if n < min_words:
            return f"{n} words, fewer than {min_words}"
        if n > max_words:
            return f"{n} words, more than {max_words}"
        return None
    return rule


def forbidden_rule(phrases: Iterable[str]) -> Rule:
    phrases = [p.casefold() for p in phrases]

    def rule(text: str) -> str | None:
        low = text.casefold()
        hit = next((p for p in phrases if p in low), None)
        return f"contains '{hit.strip()}', which the agent cannot do in the browser sandbox" if hit else None
    return rule


def load_rule(spec: str) -> Rule:
    """``'package.module:callable'`` -> the callable; a clear error when it cannot be found."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"feasibility rule {spec!r} must look like 'package.module:callable'")
    try:
        rule = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"feasibility rule {spec!r} cannot be loaded: {e}") from None
    if not callable(rule):
        raise ValueError(f"feasibility rule {spec!r} is not callable")
    return rule


@dataclass
class FeasibilityChecker:
    """Rules every instruction must pass (``common``), then its site's own (``sites[site]``)."""

    common: list[Rule] = field(default_factory=list)
    sites: dict[str, list[Rule]] = field(default_factory=dict)

    def add(self, site: str, rule: Rule) -> None:
        self.sites.setdefault(site, []).append(rule)

    def check(self, instruction: str | None, site: str) -> str | None:
        """None when feasible, else the first rule's reason."""
        if not instruction or not instruction.strip():
            return "empty instruction"
        for rule in [*self.common, *self.sites.get(site, [])]:
            if (reason := rule(instruction)) is not None:
                return reason
        return None

    def filter(self, candidates: Iterable[TaskEntry]) -> tuple[list[TaskEntry], list[TaskEntry]]:
        kept, rejected = [], []
        for c in candidates:
            reason = self.check(c.task.instruction, c.site)
            (kept.append(c) if reason is None else rejected.append(_rejected(c, "feasibility", reason)))
        return kept, rejected


def feasibility_from_config(cur, site_rules: dict[str, list[Rule]] | None = None) -> FeasibilityChecker:
    """The checker for ``cur`` (a :class:`~webrl.config.CurriculumConfig`): length bounds and forbidden
    phrases everywhere, ``site_rules`` (e.g. :func:`curriculum.sandbox_catalog.sandbox_rules`) and
    the rules named in ``cur.feasibility_rules``."""
    checker = FeasibilityChecker(common=[length_rule(cur.min_words, cur.max_words), forbidden_rule(cur.forbidden_phrases)])
    for site, rules in (site_rules or {}).items():
        for rule in rules:
            checker.add(site, rule)
    for site, specs in cur.feasibility_rules.items():
        for spec in specs:
            checker.add(site, load_rule(spec))
    return checker


# ---- the per-phase cap ---------------------------------------------------------------------------

def cap(candidates: list[TaskEntry], room: int, limit: int) -> tuple[list[TaskEntry], list[TaskEntry]]:
    """Keep at most ``room`` candidates, taken in turn from each site (so one site cannot fill the
    phase), in their order within a site. ``limit`` is the per-phase cap, for the reason."""
    by_site: dict[str, list[TaskEntry]] = {}
    for c in candidates:
        by_site.setdefault(c.site, []).append(c)
    order: list[TaskEntry] = []
    queues = list(by_site.values())
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    room = max(0, room)
    reason = f"over the per-phase cap of {limit} generated tasks"
    return order[:room], [_rejected(c, "cap", reason) for c in order[room:]]


# ---- all of them ---------------------------------------------------------------------------------

@dataclass
class FilterResult:
    kept: list[TaskEntry]
    rejected: list[TaskEntry]

    def counts(self) -> dict[str, int]:
        by: dict[str, int] = {}
        for r in self.rejected:
            by[r.filter or "?"] = by.get(r.filter or "?", 0) + 1
        return {"kept": len(self.kept), "rejected": len(self.rejected), **{f"rejected_{k}": v for k, v in sorted(by.items())}}


def apply_filters(candidates: list[TaskEntry], *, cur, checker: FeasibilityChecker, existing: Iterable[TaskEntry],
                  value_fn: ValueFn | None, room: int) -> FilterResult:
    """Feasibility, duplicates (against ``existing`` and each other), the value window (``value_fn``
    called once on the survivors; None skips it) and the cap (``room`` left in the phase)."""
    rejected: list[TaskEntry] = []
    kept, out = checker.filter(candidates)
    rejected += out
    kept, out = dedup(kept, existing, cur.dedup_jaccard)
    rejected += out
    if value_fn is not None and kept:
        kept, out = value_filter(kept, list(value_fn([c.task for c in kept])), cur.value_low, cur.value_high, cur.value_heads)
        rejected += out
    kept, out = cap(kept, room, cur.cap_per_phase)
    rejected += out
    return FilterResult(kept, rejected)
