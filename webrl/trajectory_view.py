"""``webrl show-trajectory``: find a stored trajectory by id (or a unique prefix) under the run folder
and print it as a person reads it: the instruction, each page, what the model wrote, what happened."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from webrl.types import ActionKind, Trajectory

PAGE_LINES = 40


def find_trajectory(root: str | Path, ident: str) -> Trajectory:
    """The trajectory whose id is ``ident``, or the only one that starts with it, in any
    ``trajectories.jsonl`` under ``root``. Raises KeyError saying what was found instead."""
    root = Path(root)
    files = sorted(root.rglob("trajectories.jsonl")) if root.is_dir() else []
    if not files:
        raise KeyError(f"no trajectories under {root}: run `webrl eval` first, or give --dir")
    head = '{"id":"' + ident
    matches: dict[str, str] = {}
    for path in files:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(head):
                    tid = line[7:line.index('"', 7)]
                    if tid == ident:
                        return Trajectory.model_validate_json(line)
                    matches.setdefault(tid, line)
    if len(matches) == 1:
        return Trajectory.model_validate_json(next(iter(matches.values())))
    if matches:
        shown = ", ".join(sorted(matches)[:5])
        raise KeyError(f"'{ident}' matches {len(matches)} trajectories ({shown}, ...): give more of the id")
    raise KeyError(f"no trajectory '{ident}' under {root} ({len(files)} runs searched); "
                   "ids are printed by `webrl eval` and stored in <run>/trajectories.jsonl")


def _page(html: str, full: bool) -> str:
    lines = html.splitlines()
    if full or len(lines) <= PAGE_LINES:
        return html
    return "\n".join(lines[:PAGE_LINES]) + f"\n… {len(lines) - PAGE_LINES} more lines (--full shows them)"


def print_trajectory(traj: Trajectory, console: Console, full_pages: bool = False) -> None:
    o = traj.outcome
    console.rule(f"[bold]{traj.id}")
    console.print(f"[bold]task:[/] {traj.task_id}  seed {traj.seed}  [bold]model:[/] {traj.model or '?'}  "
                  f"[bold]mode:[/] {traj.mode}  phase {traj.phase}  worker {traj.worker_id}  attempt {traj.attempt}",
                  highlight=False)
    console.print(f"[bold]instruction:[/] {traj.instruction}", highlight=False)
    for i, step in enumerate(traj.steps):
        obs = step.observation
        console.rule(f"step {i + 1}", style="cyan")
        console.print(f"[bold]url:[/] {obs.url}  [dim]({obs.element_count} elements, prompt {len(step.prompt_token_ids)} "
                      f"tokens, weights v{step.policy_version})[/]", highlight=False)
        if obs.error:
            console.print(f"[bold red]error shown to the agent:[/] {obs.error}", highlight=False)
        for note in obs.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False)
        console.print(_page(obs.html, full_pages), markup=False, highlight=False, soft_wrap=True)
        mean_lp = sum(step.logprobs) / len(step.logprobs) if step.logprobs else 0.0
        console.print(f"[bold]model wrote[/] [dim]({len(step.action_token_ids)} tokens, mean log-prob {mean_lp:.2f}):[/]",
                      highlight=False)
        console.print(step.action_text, markup=False, highlight=False)
        if step.action.kind is ActionKind.invalid:
            console.print(f"[red]-> not an action:[/] {step.action.error}", highlight=False)
        else:
            console.print(f"[green]-> {step.action.kind.value}[/]"
                          + (f" element {step.action.element}" if step.action.element is not None else "")
                          + (f" {step.action.argument!r}" if step.action.argument else "")
                          + f"  reward {step.reward:+.2f}", highlight=False)
    console.rule("outcome")
    verdict = "[bold green]success" if traj.success else "[bold red]failure"
    console.print(f"{verdict}[/]  reward {o.reward:+.2f} ({o.source.value})  status {o.status.value}"
                  + (f": {o.reason}" if o.reason else "") + (f"  answer: {traj.answer!r}" if traj.answer else ""),
                  highlight=False)
    for line in o.checks:
        console.print(f"  [dim]{line}[/]", highlight=False)
    t = traj.timings
    if t:
        console.print(f"[dim]{len(traj.steps)} steps in {t.get('total_s', 0):.1f} s (generation {t.get('generate_s', 0):.1f} s, "
                      f"browser {t.get('env_s', 0):.1f} s)[/]", highlight=False)
