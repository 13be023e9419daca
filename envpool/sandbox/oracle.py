"""Oracle replays: play a task's stored oracle verbatim, and keep the episodes as demonstrations.

    webrl env play sandbox/shop-cart-add-0 --oracle   # each observation, then the reward and its checks
    webrl env demo --suite sandbox --save demos/      # every oracle replayed on Ray pools, records saved
    webrl sft --data demos/                           # supervised warm start on them

Any task whose suite gives it an ``oracle`` (the sandbox seed tasks all have one) can be replayed;
the oracle's element ids were recorded against the default observation settings
(``env.observation``), so a replay under other settings may click the wrong element.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from envpool.suites import Suites, UnknownTask
from envpool.suites.adhoc import is_url
from webrl.types import EnvStep, EpisodeRecord, EpisodeStatus

DEMOS_FILE = "demos.jsonl"  # what `webrl env demo --save DIR` writes and `webrl sft --data DIR` reads


class NoOracle(KeyError):
    """The task exists but carries no oracle; the message says where oracles are."""

    def __str__(self) -> str:
        return self.args[0]


def oracle_of(suites: Suites, task_id: str) -> list[str]:
    """The task's oracle (action texts), read from the task lists without starting any site.
    Unknown ids raise :class:`~envpool.suites.UnknownTask` with suggestions; tasks without one,
    :class:`NoOracle`."""
    if is_url(task_id):
        raise NoOracle(f"{task_id} is a page, not a task: only tasks carry oracles (webrl env list --suite sandbox)")
    suite = suites.by_name.get(task_id.split("/", 1)[0])
    task = next((t for t in suite.tasks() if t.id == task_id), None) if suite else None
    if task is None:
        suites.resolve(task_id)  # raises UnknownTask with suggestions
        raise UnknownTask(f"no task '{task_id}'")
    if not task.oracle:
        raise NoOracle(f"task {task_id} has no oracle to replay; the sandbox tasks have one "
                       "(webrl env list --suite sandbox), or give the actions with --action")
    return list(task.oracle)


async def replay(pool, task_id: str, actions: list[str],
                 on_step: Callable[[int, str, EnvStep], None] | None = None) -> EpisodeRecord:
    """Play ``actions`` verbatim in a fresh episode of ``task_id`` (stopping early if it ends) and
    return the closed episode's record; ``on_step(number, action, step)`` sees each step."""
    rec = await pool.reset(task_id)
    if rec.status is EpisodeStatus.running:
        for number, text in enumerate(actions, start=1):
            step = await pool.step(rec.episode_id, text)
            if on_step is not None:
                on_step(number, text, step)
            if step.done:
                break
    return await pool.close(rec.episode_id)


async def replay_oracles(pool, task_ids: list[str], concurrency: int = 2) -> list[EpisodeRecord]:
    """Each task's oracle replayed in ``pool`` (``concurrency`` episodes at once), records in task order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(task_id: str) -> EpisodeRecord:
        async with gate:
            return await replay(pool, task_id, oracle_of(pool.suites, task_id))

    return list(await asyncio.gather(*(one(t) for t in task_ids)))


def save_demos(records: list[EpisodeRecord], folder: str | Path) -> Path:
    """Write episode records to ``folder/demos.jsonl``, the demonstrations ``webrl sft --data`` reads."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / DEMOS_FILE
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(r.model_dump_json() + "\n" for r in records)
    return path
