"""``webrl env demo``: scripted MiniWoB++ episodes on Ray BrowserPool actors.

Until ``webrl train`` lands this is the project's main job: it exercises the pool end to end on a
real Ray cluster (actors, concurrent episodes, crash-safe records) and prints what a person wants to
see: a progress bar, a per-task table, throughput and pool health.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from envpool.pool import remote_pool
from envpool.suites.miniwob_scripts import POLICIES, scripted_action
from webrl.cluster import init_ray
from webrl.config import WebRLConfig
from webrl.types import EpisodeRecord

console = Console()


async def _episode(pool, task_id: str, seed: int, max_steps: int) -> EpisodeRecord:
    rec = await pool.reset.remote(task_id, seed)
    obs = rec.first_observation
    for _ in range(max_steps):
        if rec.status.value != "running" or obs is None:
            break
        step = await pool.step.remote(rec.episode_id, scripted_action(task_id, rec.instruction, obs.html))
        obs = step.observation
        if step.done:
            break
    return await pool.close.remote(rec.episode_id)


async def _run_all(pools, jobs, max_steps, progress, bar) -> list[EpisodeRecord]:
    async def one(i, task_id, seed):
        rec = await _episode(pools[i % len(pools)], task_id, seed, max_steps)
        progress.advance(bar)
        return rec

    return await asyncio.gather(*(one(i, t, s) for i, (t, s) in enumerate(jobs)))


def run_demo(cfg: WebRLConfig, tasks: list[str] | None, seeds: int, pools: int, report: str | None,
             save: str | None = None) -> int:
    names = tasks or sorted(POLICIES)
    unknown = [n for n in names if n.split("/", 1)[-1] not in POLICIES]
    if unknown:
        console.print(f"[red]no scripted policy for {', '.join(unknown)}[/]; scripted: {', '.join(sorted(POLICIES))}")
        return 2
    jobs = [(f"miniwob/{n.split('/', 1)[-1]}", s) for n in names for s in range(seeds)]
    ray = init_ray(cfg.ray)
    actors = [remote_pool(cfg.env, num_cpus=0) for _ in range(pools)]
    t0 = time.perf_counter()
    with Progress(TextColumn("[bold]episodes"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task("episodes", total=len(jobs))
        records = asyncio.run(_run_all(actors, jobs, cfg.env.max_steps, progress, bar))
    wall = time.perf_counter() - t0
    health = ray.get([a.health.remote() for a in actors])
    ray.get([a.shutdown.remote() for a in actors])

    by_task: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        by_task[r.task_id].append(r)
    table = Table(title="webrl env demo: scripted policies on MiniWoB++")
    for col in ("task", "episodes", "success", "steps/ep", "ms/step", "not done"):
        table.add_column(col, justify="left" if col == "task" else "right")
    rows = []
    for task_id, recs in sorted(by_task.items()):
        step_ms = [s.elapsed_s * 1000 for r in recs for s in r.steps]
        failed = [f"{r.status.value}: {r.reason}" for r in recs if r.status.value != "done"]
        row = {
            "task": task_id, "episodes": len(recs), "success_rate": sum(r.reward > 0 for r in recs) / len(recs),
            "steps_per_episode": statistics.mean(len(r.steps) for r in recs),
            "ms_per_step": statistics.mean(step_ms) if step_ms else 0.0, "not_done": failed,
        }
        rows.append(row)
        table.add_row(task_id, str(row["episodes"]), f"{row['success_rate']:.0%}", f"{row['steps_per_episode']:.1f}",
                      f"{row['ms_per_step']:.0f}", str(len(failed)))
    total_steps = sum(len(r.steps) for r in records)
    success = sum(r.reward > 0 for r in records) / max(len(records), 1)
    console.print(table)
    console.print(f"overall success {success:.0%} over {len(records)} episodes; {total_steps} steps in {wall:.1f} s "
                  f"({total_steps / wall:.1f} steps/s); browser relaunches: {sum(h['restarts'] for h in health)}",
                  highlight=False)
    if save:
        Path(save).mkdir(parents=True, exist_ok=True)
        with open(Path(save) / "demos.jsonl", "w") as fh:
            fh.writelines(r.model_dump_json() + "\n" for r in records)
        console.print(f"{len(records)} episode records written to {Path(save) / 'demos.jsonl'} (webrl sft --data {save})")
    if report:
        Path(report).write_text(json.dumps({"success_rate": success, "episodes": len(records), "steps": total_steps,
                                            "wall_s": wall, "tasks": rows, "pools": health}, indent=2))
        console.print(f"report written to {report}")
    return 0 if success == 1.0 else 1
