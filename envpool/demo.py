"""``webrl env demo``: scripted MiniWoB++ episodes, or the sandbox tasks' oracles, on Ray BrowserPool actors.

Until ``webrl train`` lands this is the project's main job: it exercises the pool end to end on a
real Ray cluster (actors, concurrent episodes, crash-safe records) and prints what a person wants to
see: a progress bar, a per-task table, throughput and pool health. With ``--save`` the episode records
are demonstrations for ``webrl sft`` (``--suite sandbox``: every seed task's oracle, replayed verbatim).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from envpool.pool import remote_pool
from envpool.random_policy import random_action
from envpool.sandbox.oracle import save_demos
from envpool.suites.miniwob_scripts import POLICIES, scripted_action
from envpool.suites.miniwob_split import SPLITS, fingerprint, is_heldout, split_of, task_name
from webrl.cluster import init_ray
from webrl.config import WebRLConfig
from webrl.types import EpisodeRecord

console = Console()


async def _episode(pool, task_id: str, seed: int | None, max_steps: int, oracle: list[str] | None,
                   policy: str = "scripted") -> EpisodeRecord:
    """One episode: the scripted policy's actions (or the random floor's, ``policy="random"``), or (``oracle``
    given) the oracle's, verbatim. A policy that cannot go on ends its own episode (the record's reason says
    why), never the run."""
    rec = await pool.reset.remote(task_id, seed)
    obs, history, gave_up = rec.first_observation, [], None
    rng = random.Random(f"{task_id}/{seed}")
    for number in range(max_steps if oracle is None else min(max_steps, len(oracle))):
        if rec.status.value != "running" or obs is None:
            break
        if oracle is not None:
            text = oracle[number]
        elif policy == "random":
            text = random_action(rec.instruction, obs.html, rng)
        else:
            try:
                text = scripted_action(task_id, rec.instruction, obs.html, history)
            except Exception as e:  # noqa: BLE001 - any policy error: this episode fails, the others go on
                gave_up = f"the scripted policy gave up: {type(e).__name__}: {e}"
                break
        history.append(text)
        step = await pool.step.remote(rec.episode_id, text)
        obs = step.observation
        if step.done:
            break
    final = await pool.close.remote(rec.episode_id)
    if gave_up:
        final.reason = f"{final.reason}; {gave_up}"
    return final


async def _run_all(pools, jobs, max_steps, contexts, progress, bar, policy: str) -> list[EpisodeRecord]:
    gate = asyncio.Semaphore(contexts * len(pools))  # no episode waits for a context long enough to time out

    async def one(i, task_id, seed, oracle):
        async with gate:
            rec = await _episode(pools[i % len(pools)], task_id, seed, max_steps, oracle, policy)
        progress.advance(bar)
        return rec

    return await asyncio.gather(*(one(i, *job) for i, job in enumerate(jobs)))


def _oracle_jobs(cfg: WebRLConfig, suite: str, tasks: list[str] | None, split: str | None, save: bool,
                 allow_heldout: bool) -> list[tuple]:
    """(task id, None, oracle) for the chosen tasks of ``suite`` that carry an oracle (one episode each:
    an oracle is deterministic): the named ones, else ``split``'s, else all (only ``train`` when saving).
    Test tasks are never saved as demonstrations unless ``allow_heldout`` (:class:`DemoRefused`);
    unknown names raise UnknownTask with suggestions."""
    from envpool.suites import Suites

    suites = Suites(cfg.env)
    splits = getattr(suites.by_name.get(suite), "splits", ())
    if save and not tasks and split is None and "train" in splits:
        split = "train"
    picked = [t for t in suites.select(suite, tasks, split) if t.oracle]
    if save and not allow_heldout and "test" in splits:
        test = {t.id for t in suites.by_name[suite].split("test")}
        held = [t.id for t in picked if t.id in test]
        if held:
            raise DemoRefused(f"{', '.join(held[:5])}{' ...' if len(held) > 5 else ''} in the test split of {suite}: "
                              "test tasks are never used for demonstrations, SFT or RL. Leave them out (--split train), "
                              "or pass --allow-heldout to save them for evaluation only")
    return [(t.id, None, list(t.oracle)) for t in picked]


class DemoRefused(ValueError):
    """The demo was asked for something it must not do; the message says what and how to proceed."""


def scripted_tasks(tasks: list[str] | None, split: str | None, save: bool, allow_heldout: bool) -> list[str]:
    """The MiniWoB++ task names to demonstrate: the named ones, else the scripted tasks of ``split``,
    else every scripted task (only the ``train`` ones when saving). Held-out tasks are never saved as
    demonstrations unless ``allow_heldout`` (evaluation only); :class:`DemoRefused` says why not."""
    if split is not None and split not in SPLITS:
        raise DemoRefused(f"miniwob has no split '{split}'; its splits: {', '.join(SPLITS)}")
    if tasks:
        names = [task_name(t) for t in tasks]
    else:
        names = [n for n in sorted(POLICIES) if (split_of(n) == split if split else not (save and is_heldout(n)))]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise DemoRefused(f"no scripted policy for {', '.join(unknown)}; scripted: {', '.join(sorted(POLICIES))}")
    outside = [n for n in names if split is not None and split_of(n) != split]
    if outside:
        raise DemoRefused(f"{', '.join(outside)} not in split '{split}' of miniwob")
    heldout = [n for n in names if is_heldout(n)]
    if save and heldout and not allow_heldout:
        raise DemoRefused(
            f"{', '.join(heldout)} {'is a held-out task' if len(heldout) == 1 else 'are held-out tasks'} "
            "(envpool/suites/miniwob_split.py): held-out tasks are never used for demonstrations, SFT or RL. "
            "Leave them out (--split train), or pass --allow-heldout to save them for evaluation only")
    return names


def demo_jobs(cfg: WebRLConfig, suite: str, tasks: list[str] | None, seeds: int, split: str | None, save: bool,
              allow_heldout: bool, policy: str = "scripted") -> tuple[list[tuple], str]:
    """(task id, seed, oracle) per episode, and a title: MiniWoB++'s scripted policies over ``seeds`` seeds,
    or each task's oracle once, or (``policy="random"``) the random floor on any suite's tasks over ``seeds``
    seeds. Raises :class:`DemoRefused` for held-out tasks asked to be saved."""
    if policy == "random":
        from envpool.suites import Suites

        if save:
            raise DemoRefused("random-action episodes are a floor to measure against, not demonstrations: drop --save")
        suites = Suites(cfg.env)
        try:
            picked = suites.select(suite, tasks, split)
        finally:
            suites.close()
        return [(t.id, s, None) for t in picked for s in range(seeds)], f"random actions on {suite}"
    if suite == "miniwob":
        names = scripted_tasks(tasks, split, save, allow_heldout)
        if save and allow_heldout and any(is_heldout(n) for n in names):
            console.print("[yellow]saving held-out tasks: for evaluation only, never train on them[/]")
        return [(f"miniwob/{n}", s, None) for n in names for s in range(seeds)], "scripted policies on MiniWoB++"
    jobs = _oracle_jobs(cfg, suite, tasks, split, save, allow_heldout)
    if not jobs:
        raise DemoRefused(f"no task of {suite}{f' (split {split})' if split else ''} carries an oracle")
    cfg.env.max_steps = max(cfg.env.max_steps, *(len(oracle) for *_, oracle in jobs))
    return jobs, f"oracles of the {suite} tasks"


def run_jobs(cfg: WebRLConfig, jobs: list[tuple], pools: int,
             policy: str = "scripted") -> tuple[list[EpisodeRecord], float, list[dict]]:
    """Play ``jobs`` on ``pools`` BrowserPool actors with a progress bar: (records, wall seconds, pool health)."""
    ray = init_ray(cfg.ray)
    actors = [remote_pool(cfg.env, num_cpus=0) for _ in range(pools)]
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]episodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task("episodes", total=len(jobs))
        records = asyncio.run(_run_all(actors, jobs, cfg.env.max_steps, cfg.env.browser.contexts, progress, bar, policy))
    wall = time.perf_counter() - t0
    health = ray.get([a.health.remote() for a in actors])
    ray.get([a.shutdown.remote() for a in actors])
    return records, wall, health


def run_demo(cfg: WebRLConfig, tasks: list[str] | None, seeds: int, pools: int, report: str | None,
             save: str | None = None, suite: str = "miniwob", split: str | None = None,
             allow_heldout: bool = False, policy: str = "scripted") -> int:
    try:
        jobs, title = demo_jobs(cfg, suite, tasks, seeds, split, bool(save), allow_heldout, policy)
    except DemoRefused as e:
        console.print(f"[red]{e}[/]", highlight=False)
        return 2
    records, wall, health = run_jobs(cfg, jobs, pools, policy)

    by_task: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task_id].append(r)
    table = Table(title=f"webrl env demo: {title}")
    for col in ("task", "split", "episodes", "success", "steps/ep", "ms/step", "not done"):
        table.add_column(col, justify="left" if col == "task" else "right")
    rows = []
    for task_id, recs in sorted(by_task.items()):
        step_ms = [s.elapsed_s * 1000 for r in recs for s in r.steps]
        failed = [f"{r.status.value}: {r.reason}" for r in recs if r.status.value != "done"]
        row = {
            "task": task_id, "split": split_of(task_id) if task_id.startswith("miniwob/") else None,
            "episodes": len(recs), "success_rate": sum(r.reward > 0 for r in recs) / len(recs),
            "steps_per_episode": statistics.mean(len(r.steps) for r in recs),
            "ms_per_step": statistics.mean(step_ms) if step_ms else 0.0, "not_done": failed,
        }
        rows.append(row)
        table.add_row(task_id, row["split"] or "", str(row["episodes"]), f"{row['success_rate']:.0%}",
                      f"{row['steps_per_episode']:.1f}", f"{row['ms_per_step']:.0f}", str(len(failed)))
    total_steps = sum(len(r.steps) for r in records)
    success = sum(r.reward > 0 for r in records) / max(len(records), 1)
    console.print(table)
    console.print(f"overall success {success:.0%} over {len(records)} episodes; {total_steps} steps in {wall:.1f} s "
                  f"({total_steps / wall:.1f} steps/s); browser relaunches: {sum(h['restarts'] for h in health)}",
                  highlight=False)
    if save:
        path = save_demos(records, save)
        console.print(f"{len(records)} episode records written to {path} (webrl sft --data {save})")
    if report:
        Path(report).write_text(json.dumps({"success_rate": success, "episodes": len(records), "steps": total_steps,
                                            "wall_s": wall, "tasks": rows, "pools": health,
                                            "miniwob_split": fingerprint()}, indent=2))
        console.print(f"report written to {report}")
    return 0 if policy == "random" or success == 1.0 else 1  # a demonstrator must succeed; the floor is a measure
