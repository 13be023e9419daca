"""``webrl eval``: any model on any suite, on the rollout fleet (Ray workers, vLLM by default), with a
progress bar, a per-task success table, a JSON report, and every trajectory saved for
``webrl show-trajectory``."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from webrl.config import WebRLConfig
from webrl.types import EpisodeSpec, EpisodeSummary, Task

console = Console()


def eval_specs(run: str, tasks: list[Task], episodes: int, seed: int) -> list[EpisodeSpec]:
    """``episodes`` seeds of every task, interleaved so that a partial run covers every task; ids are
    ``<run>-<n>``, fixed before anything runs (a rerun after a crash keeps its id)."""
    jobs = [(t.id, seed + k) for k in range(episodes) for t in tasks]
    return [EpisodeSpec(id=f"{run}-{n:04d}", task_id=tid, seed=s, mode="eval") for n, (tid, s) in enumerate(jobs)]


def summarize(summaries: list[EpisodeSummary]) -> dict:
    """Per-task and overall figures of an evaluation (the report's body)."""
    by_task: dict[str, list[EpisodeSummary]] = defaultdict(list)
    for s in summaries:
        by_task[s.task_id].append(s)
    tasks = {}
    for task_id, runs in sorted(by_task.items()):
        reasons = defaultdict(int)
        for s in runs:
            if not s.success and s.reason:
                reasons[s.reason.split(" (last:")[0].split(":")[0]] += 1
        tasks[task_id] = {
            "episodes": len(runs), "successes": sum(s.success for s in runs),
            "success_rate": sum(s.success for s in runs) / len(runs),
            "mean_reward": statistics.mean(s.reward for s in runs),
            "steps_per_episode": statistics.mean(s.steps for s in runs),
            "failures": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        }
    n = len(summaries)
    return {
        "success_rate": sum(s.success for s in summaries) / n if n else 0.0,
        "episodes": n, "successes": sum(s.success for s in summaries),
        "steps": sum(s.steps for s in summaries), "generated_tokens": sum(s.generated_tokens for s in summaries),
        "reruns": sum(s.attempt > 1 for s in summaries), "tasks": tasks,
    }


def _table(title: str, summary: dict) -> Table:
    table = Table(title=title)
    for col in ("task", "episodes", "success", "reward", "steps/ep", "most common failure"):
        table.add_column(col, justify="left" if col in ("task", "most common failure") else "right")
    for task_id, row in summary["tasks"].items():
        failure = next(iter(row["failures"].items()), None)
        table.add_row(task_id, str(row["episodes"]), f"{row['success_rate']:.0%}", f"{row['mean_reward']:+.2f}",
                      f"{row['steps_per_episode']:.1f}", f"{failure[0]} ({failure[1]})" if failure else "")
    table.add_section()
    table.add_row("[bold]overall", str(summary["episodes"]), f"[bold]{summary['success_rate']:.0%}", "", "", "")
    return table


def run_eval(cfg: WebRLConfig, tasks: list[Task], episodes: int, *, model: str | None = None,
             out_dir: str | None = None, report: str | None = None) -> dict:
    import ray

    from actors.fleet import RolloutFleet
    from actors.replay_buffer import remote_buffer
    from webrl.cluster import init_ray

    run = f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    folder = Path(out_dir or Path(cfg.run_dir) / run)
    specs = eval_specs(run, tasks, episodes, cfg.seed)
    init_ray(cfg.ray)
    buffer = remote_buffer(str(folder), resources=cfg.ray.placement.replay_buffer)
    r = cfg.rollout
    console.print(f"[bold]{run}[/]: {len(specs)} episodes ({len(tasks)} tasks × {episodes}) with "
                  f"{model or r.model} on {r.workers} {r.engine} worker(s), greedy={r.eval_temperature == 0}; "
                  f"trajectories -> {folder}", highlight=False)
    t0 = time.perf_counter()
    fleet = RolloutFleet(cfg, buffer, model_path=model)
    try:
        with Progress(TextColumn("[bold]episodes"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), console=console) as progress:
            bar = progress.add_task("", total=len(specs))
            wins = [0]

            def on_result(s: EpisodeSummary) -> None:
                wins[0] += s.success
                progress.update(bar, advance=1, description=f"success {wins[0]}/{progress.tasks[bar].completed + 1}")

            summaries = fleet.run(specs, on_result)
        workers = fleet.info()
    finally:
        fleet.shutdown()
    wall = time.perf_counter() - t0
    stored = ray.get(buffer.stats.remote())
    summary = summarize(summaries) | {
        "run": run, "model": model or r.model, "engine": r.engine, "workers": r.workers, "wall_s": wall,
        "steps_per_s": sum(s.steps for s in summaries) / wall, "trajectories": str(folder),
        "stored": stored.get("trajectories"), "worker_stats": workers,
    }
    console.print(_table(f"webrl eval: {summary['model']} ({r.engine})", summary))
    console.print(f"{summary['steps']} steps in {wall:.0f} s ({summary['steps_per_s']:.2f} steps/s), "
                  f"{summary['reruns']} episodes rerun after a crash; see one with "
                  f"`webrl show-trajectory {specs[0].id}`" if specs else "", highlight=False)
    if report:
        Path(report).parent.mkdir(parents=True, exist_ok=True)
        Path(report).write_text(json.dumps(summary, indent=2, default=str))
        console.print(f"report written to {report}")
    return summary
