"""What ``webrl train`` shows and writes: success per site with a 95% interval, the summary table each
phase prints, ``report.json`` (every phase) and ``success_per_phase.png`` (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable

from rich.table import Table

from webrl.types import Trajectory

REPORT = "report.json"
PLOT = "success_per_phase.png"


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a success rate (95% by default); None without episodes."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def success_by_site(trajs: Iterable[Trajectory], site_of: Callable[[str], str]) -> dict:
    """Episodes, successes, rate and 95% interval overall and per site (``site_of(task_id)``)."""
    sites: dict[str, list[int]] = {}
    for t in trajs:
        c = sites.setdefault(site_of(t.task_id), [0, 0])
        c[0] += 1
        c[1] += int(t.success)

    def row(n: int, k: int) -> dict:
        return {"episodes": n, "successes": k, "success_rate": k / n if n else None, "ci95": wilson(k, n)}

    total_n, total_k = sum(c[0] for c in sites.values()), sum(c[1] for c in sites.values())
    return row(total_n, total_k) | {"sites": {s: row(*c) for s, c in sorted(sites.items())}}


def _rate(row: dict | None) -> str:
    if not row or not row.get("episodes"):
        return "-"
    ci = row.get("ci95")
    return f"{row['successes']}/{row['episodes']} {row['success_rate']:.0%}" + (f" [{ci[0]:.0%}, {ci[1]:.0%}]" if ci else "")


def phase_table(p: dict) -> Table:
    """The summary a phase prints: success on train and test per site, ORM agreement, curriculum counts,
    replay sizes, learner figures and times."""
    table = Table(title=f"webrl train: phase {p['phase']} (policy version {p['version']})", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    train, test = p["train"], p.get("test")
    table.add_row("train success", _rate(train))
    for site, row in train["sites"].items():
        table.add_row(f"  train {site}", _rate(row))
    table.add_row("test success", _rate(test) if test else "not evaluated")
    for site, row in (test or {}).get("sites", {}).items():
        table.add_row(f"  test {site}", _rate(row))
    if p.get("test_instances"):
        table.add_row("unseen instances of train tasks", _rate(p["test_instances"]))
    orm = p["orm"]
    table.add_row("ORM judged", str(orm["orm_judged"]))
    table.add_row("ORM agrees with rule labels",
                  f"{orm['agree']}/{orm['pairs']} {orm['rate']:.0%}" if orm["pairs"] else "no pairs")
    cur = p["curriculum"]
    if cur.get("enabled", True) and "generated" in cur:
        table.add_row(f"tasks for phase {cur['phase']}: generated / kept / rejected",
                      f"{cur['generated']} / {cur['kept']} / {cur['rejected']}")
        for name, n in cur.get("rejected_by_filter", {}).items():
            table.add_row(f"  rejected by {name}", str(n))
    else:
        table.add_row("curriculum", cur.get("note", "off"))
    r = p["replay"]
    table.add_row("replay: current steps / past successes / replayed steps",
                  f"{r['current_steps']} / {r['past_trajectories']} / {r['replayed_steps']}")
    lr = p["learner"]
    table.add_row("critic / actor steps", f"{lr['critic_steps']} / {lr['actor_steps']}")
    table.add_row("critic / actor loss (last)", f"{_num(lr['critic_loss'])} / {_num(lr['actor_loss'])}")
    table.add_row("times (s)", "  ".join(f"{k} {v:.0f}" for k, v in p["times"].items()))
    return table


def _num(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON whole or not at all (a temporary file renamed over it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, path)


def plot_success(report: dict, path: Path) -> Path | None:
    """``success_per_phase.png``: train success per phase, and test success (held-out tasks; unseen instances
    of the train tasks where evaluated) with 95% intervals, the starting policy's at phase 'start'; None when
    matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = report["phases"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    xs = [p["phase"] for p in phases]
    ax.plot(xs, [p["train"]["success_rate"] or 0 for p in phases], "o-", label="train (rollouts)")
    ticks = set(xs)
    for key, start_key, fmt, label in (("test", "initial", "s-", "test (held-out tasks)"),
                                       ("test_instances", "initial_instances", "d--", "unseen instances of train tasks")):
        test = [(p["phase"], p[key]) for p in phases if p.get(key) and p[key]["episodes"]]
        initial = report.get(start_key)
        if initial and initial["episodes"]:
            test.insert(0, (-1, initial))
        if test:
            ax.errorbar([x for x, _ in test], [t["success_rate"] for _, t in test], fmt=fmt, capsize=3, label=label,
                        yerr=[[t["success_rate"] - t["ci95"][0] for _, t in test],
                              [t["ci95"][1] - t["success_rate"] for _, t in test]])
            ticks |= {x for x, _ in test}
    ax.set_xticks(sorted(ticks))
    ax.set_xticklabels(["start" if x == -1 else str(x) for x in sorted(ticks)])
    ax.set_xlabel("phase")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"webrl train: {report['run']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
