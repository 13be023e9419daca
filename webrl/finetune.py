"""``webrl sft``: the supervised warm start, on one process (a laptop's CPU or one GPU), written as a
checkpoint whose ``policy/`` folder every engine serves and ``webrl eval --model`` measures.

``--resume CHECKPOINT_DIR`` continues a run from a checkpoint it wrote (policy or LoRA adapters,
optimizer state, RNG, step counter): the epochs and batches already trained are skipped, so that a
resumed run ends exactly where an uninterrupted one would. ``--epochs`` counts the whole run.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from webrl.config import WebRLConfig

console = Console()


def samples_fingerprint(samples: list[tuple[list[int], int]]) -> str:
    """A short hash of what the steps train on (token ids and prompt lengths): a resumed run must see the
    same samples to continue the same run."""
    digest = hashlib.sha256()
    for ids, prompt_len in samples:
        digest.update(f"{prompt_len}:{','.join(map(str, ids))};".encode())
    return digest.hexdigest()[:16]


def _resume_manifest(resume: str | None) -> dict | None:
    if resume is None:
        return None
    from learner.checkpoint import read_manifest

    manifest = read_manifest(resume)
    if manifest.get("kind") != "sft":
        raise ValueError(f"{resume} is not a checkpoint of `webrl sft` (its kind is {manifest.get('kind')!r}); "
                         "--resume takes a folder that `webrl sft --out` wrote")
    return manifest


def _check_same_run(manifest: dict, resume: str, fingerprint: str, cfg: WebRLConfig) -> None:
    """A resumed run must train on the same samples in the same batches, or its step counter means nothing."""
    if manifest.get("sft_data", fingerprint) != fingerprint:
        raise ValueError(f"the demonstrations differ from those {resume} was trained on (fingerprint {fingerprint}, "
                         f"the checkpoint's {manifest['sft_data']}): resume with the same --data and "
                         "--include-failures, or start a new run without --resume")
    batch = manifest.get("learner_config", {}).get("sft_batch_size", cfg.learner.sft_batch_size)
    seed = manifest.get("seed", cfg.seed)
    if (batch, seed) != (cfg.learner.sft_batch_size, cfg.seed):
        raise ValueError(f"{resume} was trained with learner.sft_batch_size={batch} and seed={seed}, this run has "
                         f"{cfg.learner.sft_batch_size} and {cfg.seed}: set them as the checkpoint's run did (they "
                         "decide which batches its steps were)")


def one_process(path: Path, cfg: WebRLConfig):
    """``webrl sft`` in this process (a laptop's CPU or one GPU): a learner group's one rank, without Ray."""
    from learner.group import LearnerRank

    return LearnerRank(0, 1, "", str(path), cfg.learner, cfg.learner.micro_batch, cfg.seed)


def run_sft(cfg: WebRLConfig, data: list[str], *, model: str | None = None, out: str | None = None,
            epochs: int | None = None, include_failures: bool = False, resume: str | None = None,
            save_every: int | None = None, learners: Callable[[Path, WebRLConfig], object] = one_process) -> dict:
    """Train ``epochs`` passes (default ``learner.sft_epochs``) over the demonstrations in ``data``; with
    ``resume``, continue the run that wrote that checkpoint (``out`` defaults to it). ``save_every``
    steps a checkpoint is written on the way, and one at the end. ``learners(model_dir, cfg)`` builds what
    trains: this process (:func:`one_process`), or a :class:`learner.group.LearnerGroup` on the learner
    nodes (``webrl train``'s warm start); it is shut down at the end."""
    from transformers import AutoTokenizer

    from actors.model_store import resolve_model
    from learner.sft import demo_samples, load_demos

    lc = cfg.learner
    manifest = _resume_manifest(resume)
    demos = load_demos(data, successful_only=not include_failures)
    if not demos:
        raise ValueError(f"no usable demonstrations in {', '.join(data)} (only successful episodes count; "
                         "--include-failures takes the others too)")
    # a full fine-tune resumes on the checkpoint's policy; LoRA on the base model its adapters were trained on
    path = Path(resume) / "policy" if resume and not lc.lora.enabled else resolve_model(model or cfg.rollout.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    samples = demo_samples(demos, tokenizer, lc.context_tokens)
    fingerprint = samples_fingerprint(samples)
    if manifest:
        _check_same_run(manifest, resume, fingerprint, cfg)
    learner = learners(path, cfg)
    try:
        return _train(cfg, learner, len(demos), samples, fingerprint, tokenizer, path, epochs, resume, out, save_every)
    finally:
        learner.shutdown()


def _train(cfg: WebRLConfig, learner, demos: int, samples: list, fingerprint: str, tokenizer, path: Path,
           epochs: int | None, resume: str | None, out: str | None, save_every: int | None) -> dict:
    """run_sft's epochs on ``learner``, from the resumed step on; its summary."""
    from learner.sft import sft_batches

    lc = cfg.learner
    start = learner.load(resume)["step"] if resume else 0
    epochs = epochs or lc.sft_epochs
    per_epoch = -(-len(samples) // lc.sft_batch_size)
    total = epochs * per_epoch
    folder = Path(out or resume or Path("checkpoints") / "sft")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    tokens = sum(len(ids) - p for ids, p in samples)

    def save(step: int) -> None:
        learner.save(str(folder), phase=0, step=step, tokenizer_dir=str(path),
                     extra={"kind": "sft", "sft_data": fingerprint, "seed": cfg.seed, "epochs": epochs})

    console.print(f"sft: {demos} demonstrations, {len(samples)} steps, {tokens} action tokens; "
                  f"{epochs} epochs of batches of {lc.sft_batch_size} at lr {lc.sft_lr:g} on {path}"
                  + (f"; resuming at step {start} of {total}" if resume else ""), highlight=False)
    losses, trained, step, t0 = [], 0, start, time.perf_counter()
    with Progress(TextColumn("[bold]sft"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console) as progress:
        bar = progress.add_task("", total=total, completed=min(start, total))
        for epoch in range(start // per_epoch, epochs):
            for i, batch in enumerate(sft_batches(samples, lc.sft_batch_size, pad, seed=cfg.seed + epoch)):
                if epoch * per_epoch + i < start:
                    continue  # trained before the checkpoint
                losses.append(learner.sft_step(batch)["sft_loss"])
                trained += int(batch.action_mask.sum())
                step += 1
                progress.update(bar, advance=1, description=f"epoch {epoch + 1} loss {losses[-1]:.3f}")
                if save_every and step % save_every == 0 and step < total:
                    save(step)
    wall = time.perf_counter() - t0
    if losses:
        save(step)
    else:
        console.print(f"nothing to train: {resume} has done {start} of the {total} steps of {epochs} epochs "
                      "(raise --epochs to train on)", highlight=False)
    summary = {"demonstrations": demos, "samples": len(samples), "action_tokens": tokens, "epochs": epochs,
               "resumed_at": start, "steps": step, "first_loss": losses[0] if losses else None,
               "last_loss": losses[-1] if losses else None, "wall_s": wall, "tokens_per_s": trained / wall if wall else 0.0,
               "checkpoint": str(folder), "policy": str(folder / "policy")}
    table = Table(title="webrl sft")
    table.add_column("")
    table.add_column("", justify="right")
    for key in ("demonstrations", "samples", "action_tokens", "resumed_at", "steps", "first_loss", "last_loss", "wall_s",
                "tokens_per_s"):
        value = summary[key]
        table.add_row(key.replace("_", " "), f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    if losses:
        console.print(f"policy written to {folder / 'policy'}: measure it with `webrl eval --model {folder / 'policy'}`",
                      highlight=False)
    return summary
