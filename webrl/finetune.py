"""``webrl sft``: the supervised warm start, on one process (a laptop's CPU or one GPU), written as a
checkpoint whose ``policy/`` folder every engine serves and ``webrl eval --model`` measures."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from webrl.config import WebRLConfig

console = Console()


def run_sft(cfg: WebRLConfig, data: list[str], *, model: str | None = None, out: str | None = None,
            epochs: int | None = None, include_failures: bool = False) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.model_store import resolve_model
    from learner.checkpoint import save_checkpoint
    from learner.learner import Learner
    from learner.sft import demo_samples, load_demos, sft_batches

    lc = cfg.learner
    demos = load_demos(data, successful_only=not include_failures)
    if not demos:
        raise ValueError(f"no usable demonstrations in {', '.join(data)} (only successful episodes count; "
                         "--include-failures takes the others too)")
    path = resolve_model(model or cfg.rollout.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    samples = demo_samples(demos, tokenizer, lc.context_tokens)
    policy = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    learner = Learner(policy, lc, micro_batch=lc.micro_batch)
    epochs = epochs or lc.sft_epochs
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = sum(len(ids) - p for ids, p in samples)
    console.print(f"sft: {len(demos)} demonstrations, {len(samples)} steps, {tokens} action tokens; "
                  f"{epochs} epochs of batches of {lc.sft_batch_size} at lr {lc.sft_lr:g} on {path}", highlight=False)
    losses, t0 = [], time.perf_counter()
    with Progress(TextColumn("[bold]sft"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        batches_per_epoch = -(-len(samples) // lc.sft_batch_size)
        bar = progress.add_task("", total=epochs * batches_per_epoch)
        for epoch in range(epochs):
            for batch in sft_batches(samples, lc.sft_batch_size, pad, seed=cfg.seed + epoch):
                out_step = learner.sft_step(batch)
                losses.append(out_step["sft_loss"])
                progress.update(bar, advance=1, description=f"epoch {epoch + 1} loss {losses[-1]:.3f}")
    wall = time.perf_counter() - t0
    folder = Path(out or Path("checkpoints") / "sft")
    save_checkpoint(folder, learner, tokenizer=tokenizer, phase=0, step=len(losses), extra={"kind": "sft"})
    summary = {"demonstrations": len(demos), "samples": len(samples), "action_tokens": tokens, "epochs": epochs,
               "steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1], "wall_s": wall,
               "tokens_per_s": tokens * epochs / wall, "checkpoint": str(folder), "policy": str(folder / "policy")}
    table = Table(title="webrl sft")
    table.add_column("")
    table.add_column("", justify="right")
    for key in ("demonstrations", "samples", "action_tokens", "steps", "first_loss", "last_loss", "wall_s", "tokens_per_s"):
        value = summary[key]
        table.add_row(key.replace("_", " "), f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"policy written to {folder / 'policy'}: measure it with `webrl eval --model {folder / 'policy'}`",
                  highlight=False)
    return summary
