"""Scoring a phase's trajectories before training (DESIGN.md §1 item 2): rule and page rewards arrive in
``Trajectory.outcome``; the ORM judges the episodes no checker judged (generated tasks always, the others as
``orm.use`` says), and with ``train.orm_agreement`` also scores the rule-judged ones, to report how often it
agrees with the rule labels.

The replay buffer is append-only, so the final outcomes live beside it in ``<run>/outcomes.jsonl`` (one
line per trajectory: its outcome, and the ORM's p_yes where the ORM read it), appended and fsync'd, read
back on ``--resume``: nothing is judged twice.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel

from reward.orm import needs_orm, orm_outcome, orm_reward
from webrl.jsonl_log import JsonlLog
from webrl.types import Outcome, OutcomeSource, Task, Trajectory

FILENAME = "outcomes.jsonl"


class Judged(BaseModel):
    """A trajectory's final outcome (what training reads) and the ORM's p_yes, when it read the trajectory."""

    id: str
    outcome: Outcome
    orm_p_yes: float | None = None


class OutcomeLedger:
    """Final outcomes by trajectory id, on disk (append + fsync) and in memory."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / FILENAME
        self.judged: dict[str, Judged] = {}
        self._log = JsonlLog(self.path, "outcome ledger")  # a torn last line: its trajectory is judged again
        self._log.replay(self._load_line)

    def _load_line(self, raw: bytes) -> bool:
        j = Judged.model_validate_json(raw)
        if j.id in self.judged:
            return False
        self.judged[j.id] = j
        return True

    def add(self, items: Iterable[Judged]) -> None:
        new = [j for j in items if j.id not in self.judged]
        self._log.append(j.model_dump_json().encode() for j in new)
        self.judged.update((j.id, j) for j in new)

    def close(self) -> None:
        self._log.close()

    def apply(self, trajs: Iterable[Trajectory]) -> list[Trajectory]:
        """The trajectories with their final outcomes (as they came where none is recorded)."""
        return [t.model_copy(update={"outcome": self.judged[t.id].outcome}) if t.id in self.judged else t for t in trajs]


def judge_phase(trajs: list[Trajectory], tasks: dict[str, Task], ledger: OutcomeLedger, orm_factory, use: str,
                agreement: bool) -> list[Trajectory]:
    """Judge the trajectories the ledger has not seen, record them, return all with final outcomes.
    ``orm_factory()`` gives the :class:`~reward.orm.OutcomeRewardModel`; it is called only when some
    trajectory needs it."""
    fresh = [t for t in trajs if t.id not in ledger.judged]
    picked = [t for t in fresh if needs_orm(tasks.get(t.task_id), t.outcome, use)]
    picked_ids = {t.id for t in picked}
    labelled = [t for t in fresh if t.id not in picked_ids and t.outcome.source in (OutcomeSource.rule, OutcomeSource.page)]
    read = picked + (labelled if agreement else [])
    p_yes = dict(zip((t.id for t in read), orm_factory().p_yes(read))) if read else {}
    ledger.add(Judged(id=t.id, orm_p_yes=p_yes.get(t.id),
                      outcome=orm_outcome(p_yes[t.id], t.outcome) if t.id in picked_ids else t.outcome) for t in fresh)
    return ledger.apply(trajs)


def orm_agreement(raw: Iterable[Trajectory], ledger: OutcomeLedger) -> dict:
    """How often the ORM's verdict matches the rule (or page) label, over the trajectories (as the workers
    stored them, before judging) that have both; and how many the ORM judged."""
    raw = list(raw)
    pairs = []
    for t in raw:
        j = ledger.judged.get(t.id)
        if j is not None and j.orm_p_yes is not None and t.outcome.source in (OutcomeSource.rule, OutcomeSource.page):
            pairs.append((t.outcome.success, orm_reward(j.orm_p_yes) > 0))
    agree = sum(a == b for a, b in pairs)
    judged = sum(1 for t in raw if (j := ledger.judged.get(t.id)) and j.outcome.source is OutcomeSource.orm)
    return {"pairs": len(pairs), "agree": agree, "rate": agree / len(pairs) if pairs else None, "orm_judged": judged}
