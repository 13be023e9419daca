"""``webrl orm train`` and ``webrl orm eval``: the outcome reward model from the command line."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from webrl.config import WebRLConfig

console = Console()

EXAMPLES = """examples:
  webrl orm train --data runs/eval-20261121-083333-cd8c --out checkpoints/orm
  webrl orm eval --data runs/new-run/trajectories.jsonl --model checkpoints/orm --report orm.json
  webrl orm eval --data runs/ --model smollm2-135m-instruct      the rollout model as a zero-shot judge
"""

METRIC_ROWS = ("n", "positives", "negatives", "tp", "fp", "tn", "fn", "accuracy", "precision", "recall", "f1",
               "mean_p_yes_success", "mean_p_yes_failure")


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def metrics_table(title: str, columns: dict[str, dict]) -> Table:
    """One row per metric, one column per named set of metrics."""
    table = Table(title=title)
    table.add_column("")
    for name in columns:
        table.add_column(name, justify="right")
    for key in METRIC_ROWS:
        table.add_row(key.replace("_", " "), *(_cell(m.get(key)) for m in columns.values()))
    return table


def _warn_single_class(metrics: dict, what: str) -> None:
    if metrics["n"] and (metrics["positives"] == 0 or metrics["negatives"] == 0):
        console.print(f"[yellow]warning:[/] the {what} trajectories are all {'failures' if metrics['negatives'] else 'successes'}: "
                      "precision, recall or F1 is undefined or says little; measure on data with both outcomes",
                      highlight=False)


def _load(paths: list[str]):
    from reward.orm_data import load_trajectories

    return load_trajectories(paths)


def _guarded(func: Callable[[WebRLConfig, argparse.Namespace], int]) -> Callable[[WebRLConfig, argparse.Namespace], int]:
    """Data the ORM cannot use is an error message and exit status 2, not a traceback."""

    def run(cfg: WebRLConfig, args: argparse.Namespace) -> int:
        from reward.orm_data import OrmDataError

        try:
            return func(cfg, args)
        except OrmDataError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            return 2

    return run


@_guarded
def cmd_orm_train(cfg: WebRLConfig, args) -> int:
    from reward.orm_train import train_orm, training_split

    if args.epochs:
        cfg.orm.epochs = args.epochs
    trajs = _load(args.data)
    training_split(cfg, trajs, ", ".join(args.data))  # bad data fails here, before any model loads
    out = Path(args.out or Path("checkpoints") / "orm")
    o = cfg.orm
    console.print(f"orm train: {len(trajs)} trajectories from {', '.join(args.data)}; {o.epochs} epochs of batches of "
                  f"{o.batch_size} at lr {o.lr:g}, classes {o.class_weighting}, {o.held_out_fraction:.0%} of tasks "
                  "held out", highlight=False)
    with Progress(TextColumn("[bold]orm"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task("", total=None)

        def on_progress(done: int, total: int, text: str) -> None:
            progress.update(bar, completed=done, total=total, description=text)

        manifest = train_orm(cfg, trajs, out, model=args.model, data=args.data, on_progress=on_progress)
    c = manifest["counts"]
    console.print(f"train: {c['train']['trajectories']} trajectories of {c['train']['tasks']} tasks "
                  f"({c['train']['successes']} successes); held out: {c['held_out']['trajectories']} of "
                  f"{c['held_out']['tasks']} tasks ({c['held_out']['successes']} successes); "
                  f"{c['skipped_unlabelled']} unlabelled skipped", highlight=False)
    m = manifest["metrics"]
    console.print(metrics_table("webrl orm train: held-out tasks",
                                {"before training": m["held_out_before"], "after": m["held_out"]}))
    _warn_single_class(m["held_out"], "held-out")
    console.print(f"ORM written to {out}: measure it with `webrl orm eval --data ... --model {out}`, "
                  f"use it with --set orm.model={out}", highlight=False)
    return 0


@_guarded
def cmd_orm_eval(cfg: WebRLConfig, args) -> int:
    from actors.model_store import resolve_model
    from reward.orm_train import eval_orm

    model = resolve_model(args.model or cfg.orm.model or cfg.rollout.model)  # a bad path fails before any data is read
    trajs = _load(args.data)
    report = eval_orm(cfg, trajs, model, include_train_tasks=args.include_train_tasks, where=", ".join(args.data))
    console.print(f"{report['n']} labelled trajectories of {report['tasks']} tasks "
                  f"({report['skipped_train_tasks']} of tasks the ORM was trained on and {report['skipped_unlabelled']} "
                  "unlabelled left out)", highlight=False)
    console.print(metrics_table(f"webrl orm eval: {model}", {"against rule labels": report}))
    _warn_single_class(report, "measured")
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(json.dumps(report, indent=2))
        console.print(f"report written to {args.report}", highlight=False)
    print(json.dumps(report))
    return 0


def add_orm_parser(sub, config_args: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``webrl orm train`` and ``webrl orm eval`` under the top-level subcommands."""
    orm = sub.add_parser("orm", help="the outcome reward model: train it on rule-labelled trajectories, measure it",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    orm_sub = orm.add_subparsers(dest="orm_command", metavar="ORM_COMMAND", required=True)

    p = orm_sub.add_parser("train", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
                           help="train the ORM on trajectories a rule evaluator or page reward labelled",
                           description="Fine-tune a model to answer YES/NO on (instruction, actions, final page) for "
                           "trajectories whose outcome a rule evaluator or the task page judged (label: success). A "
                           "share of the task ids is held out (orm.held_out_fraction); classes are balanced by "
                           "oversampling (orm.class_weighting). Writes a Hugging Face directory with manifest.json "
                           "(split, counts, held-out metrics before and after).")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="JSONL files of trajectories, or folders of them (searched recursively)")
    p.add_argument("--out", metavar="DIR", help="where the ORM goes (default: checkpoints/orm)")
    p.add_argument("--model", help="the model to start from (default: orm.model, else rollout.model)")
    p.add_argument("--epochs", type=int, help="passes over the data (default: orm.epochs, the paper's 4)")
    config_args(p)
    p.set_defaults(func=cmd_orm_train)

    p = orm_sub.add_parser("eval", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
                           help="accuracy, precision, recall and F1 of an ORM against rule labels",
                           description="Judge rule-labelled trajectories with an ORM (reward 1 when P(YES) >= P(NO)) "
                           "and compare with the labels. Trajectories of tasks a `webrl orm train` checkpoint was "
                           "trained on are left out. Prints a table and one JSON line.")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="JSONL files of trajectories, or folders")
    p.add_argument("--model", help="the ORM: a `webrl orm train` folder or any model (default: orm.model, else "
                   "rollout.model)")
    p.add_argument("--report", metavar="PATH", help="also write the metrics as JSON")
    p.add_argument("--include-train-tasks", action="store_true",
                   help="measure on the tasks the ORM was trained on too")
    config_args(p)
    p.set_defaults(func=cmd_orm_eval)
