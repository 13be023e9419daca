"""The ORM's data: trajectories read from JSONL, their rule labels, the held-out split by task id, and
the metrics of a verdict against the labels.

A trajectory is labelled when a rule evaluator or the task page judged it (``outcome.source`` rule or
page); its label is its success (reward > 0). ORM-judged or unjudged trajectories carry no label.
"""

from __future__ import annotations

import random
from pathlib import Path

from pydantic import ValidationError

from webrl.types import OutcomeSource, Trajectory

LABEL_SOURCES = (OutcomeSource.rule, OutcomeSource.page)


class OrmDataError(ValueError):
    """Data the ORM cannot train or be measured on; the message says what was found and what to give."""


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.rglob("*.jsonl"))
        if not files:
            raise OrmDataError(f"no .jsonl files under {path}: give trajectory files (a run's trajectories.jsonl, "
                               "or the folder `webrl eval` / the replay buffer wrote)")
        return files
    if not path.is_file():
        raise FileNotFoundError(f"no trajectories at {path}: give JSONL files of trajectories or folders of them")
    return [path]


def load_trajectories(paths: list[str | Path]) -> list[Trajectory]:
    """Every trajectory in the JSONL files (folders: every ``*.jsonl`` under them), each id once. A line
    that is not a trajectory is an error naming its file and line."""
    seen: dict[str, Trajectory] = {}
    for path in paths:
        for file in _files(Path(path)):
            for n, line in enumerate(file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    traj = Trajectory.model_validate_json(line)
                except ValidationError as e:
                    first = e.errors(include_url=False)[0]
                    where = ".".join(map(str, first["loc"])) or "top level"
                    raise OrmDataError(f"{file}:{n} is not a trajectory ({first['msg']} at {where}); the ORM reads "
                                       "trajectories as the replay buffer and `webrl eval` write them") from None
                seen.setdefault(traj.id, traj)
    return list(seen.values())


def is_labelled(traj: Trajectory) -> bool:
    return traj.outcome.source in LABEL_SOURCES


def labelled(trajs: list[Trajectory], where: str = "the data") -> list[Trajectory]:
    """The trajectories a rule evaluator or page reward judged; an error when there are none."""
    if not trajs:
        raise OrmDataError(f"{where} holds no trajectories (empty files?)")
    out = [t for t in trajs if is_labelled(t)]
    if not out:
        sources = sorted({t.outcome.source.value for t in trajs})
        raise OrmDataError(f"none of the {len(trajs)} trajectories in {where} is labelled by a rule evaluator or a "
                           f"page reward (outcome.source rule or page; found {', '.join(sources)}): the ORM learns "
                           "from tasks that have a checker")
    return out


def require_both_classes(trajs: list[Trajectory], where: str) -> None:
    """Training needs successes and failures."""
    wins = sum(t.success for t in trajs)
    if wins in (0, len(trajs)):
        kind = "successes" if wins else "failures"
        raise OrmDataError(f"all {len(trajs)} labelled trajectories in {where} are {kind}: the ORM needs both "
                           "successful and failed episodes to learn from (add episodes of easier or harder tasks, "
                           "or of a stronger and a weaker policy)")


def split_by_task(trajs: list[Trajectory], fraction: float, seed: int = 0) -> tuple[list[Trajectory], list[Trajectory]]:
    """(train, held_out): the task ids are shuffled with ``seed`` and ``fraction`` of them (at least one,
    never all) hold out every trajectory of theirs, so that no task is in both parts."""
    tasks = sorted({t.task_id for t in trajs})
    if len(tasks) < 2:
        raise OrmDataError(f"all labelled trajectories are of one task ({tasks[0] if tasks else '-'}); a held-out "
                           "split by task id needs at least two tasks")
    random.Random(seed).shuffle(tasks)
    n_held = min(len(tasks) - 1, max(1, round(fraction * len(tasks))))
    held = set(tasks[:n_held])
    return [t for t in trajs if t.task_id not in held], [t for t in trajs if t.task_id in held]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def binary_metrics(labels: list[bool], predictions: list[bool]) -> dict:
    """Counts and rates of predictions against labels (success is the positive class). A rate whose
    denominator is 0 (precision with no YES predicted, recall with no success) is None."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    tp = sum(lab and pred for lab, pred in zip(labels, predictions))
    fp = sum(pred and not lab for lab, pred in zip(labels, predictions))
    fn = sum(lab and not pred for lab, pred in zip(labels, predictions))
    tn = len(labels) - tp - fp - fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    if precision is None or recall is None:
        f1 = None
    else:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"n": len(labels), "positives": tp + fn, "negatives": tn + fp, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "accuracy": _ratio(tp + tn, len(labels)), "precision": precision, "recall": recall, "f1": f1}
