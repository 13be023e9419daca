"""Training and measuring the ORM (``webrl orm train`` / ``webrl orm eval``).

Training is the supervised step the policy's warm start uses (``Learner.sft_step``): each sample is the
ORM prompt followed by the first token of the right answer (YES for a success, NO for a failure), and
the loss is that token's negative log-likelihood, at ``orm.lr`` for ``orm.epochs`` epochs.

Classes are balanced by **oversampling** (``orm.class_weighting=balanced``): each epoch, the rarer
class is topped up with random repeats of its own samples until both classes have as many, so that a
data set of mostly failures does not teach "always NO". Held-out trajectories are those of a share of
the task ids (``orm.held_out_fraction``): no task is in both parts, so the metrics measure judging
unseen tasks, not remembering seen pages.

The checkpoint is a Hugging Face directory (the model and its tokenizer: ``orm.model`` and ``webrl orm
eval --model`` load it, so does vLLM) with ``manifest.json``: kind ``orm``, the base model, the split's
task ids, the class counts, the config, and the held-out metrics before training, after each epoch
and at the end. It is written whole or not at all (``<out>.partial`` renamed at the end).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from pathlib import Path
from typing import Callable

import torch

from reward.orm import OutcomeRewardModel, read_orm_manifest
from reward.orm_data import OrmDataError, binary_metrics, labelled, require_both_classes, split_by_task
from webrl.config import WebRLConfig
from webrl.types import Trajectory

CLASS_WEIGHTING = {
    "balanced": "oversampled: each epoch the rarer class is topped up with random repeats to the other's count",
    "none": "as found: every labelled trajectory once per epoch",
}


def measure(orm: OutcomeRewardModel, trajs: list[Trajectory]) -> dict:
    """The ORM's verdicts (P(YES) >= P(NO)) against the rule labels: counts, accuracy, precision,
    recall, F1, and the mean p_yes of each class."""
    if not trajs:
        return binary_metrics([], [])
    scores = orm.p_yes(trajs)
    labels = [t.success for t in trajs]
    out = binary_metrics(labels, [p >= 0.5 for p in scores])
    for name, want in (("mean_p_yes_success", True), ("mean_p_yes_failure", False)):
        ps = [p for p, lab in zip(scores, labels) if lab is want]
        out[name] = sum(ps) / len(ps) if ps else None
    return out


def epoch_samples(samples: list[tuple[list[int], int]], labels: list[bool], weighting: str,
                  rng: random.Random) -> list[tuple[list[int], int]]:
    """One epoch's samples: as they are, or with the rarer class topped up by random repeats."""
    if weighting == "none":
        return list(samples)
    pos = [s for s, lab in zip(samples, labels) if lab]
    neg = [s for s, lab in zip(samples, labels) if not lab]
    small, large = sorted((pos, neg), key=len)
    return pos + neg + (rng.choices(small, k=len(large) - len(small)) if small else [])


def _save(out: Path, learner, tokenizer, manifest: dict) -> None:
    tmp, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    from learner.lora import merged

    merged(learner.policy).save_pretrained(tmp, state_dict=learner.full_policy_state(), safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def training_split(cfg: WebRLConfig, trajs: list[Trajectory], where: str = "the data"
                   ) -> tuple[list[Trajectory], list[Trajectory], list[Trajectory]]:
    """(labelled, train, held_out): errors that say what is missing when the data cannot train an ORM."""
    rows = labelled(trajs, where)
    require_both_classes(rows, where)
    train, held = split_by_task(rows, cfg.orm.held_out_fraction, cfg.seed)
    require_both_classes(train, f"the training part of {where} (after holding out tasks)")
    return rows, train, held


def train_orm(cfg: WebRLConfig, trajs: list[Trajectory], out: str | Path, *, model: str | None = None,
              data: list[str] | None = None, on_progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Train an ORM on the rule-labelled trajectories among ``trajs`` and write it to ``out``; returns the
    manifest (with the metrics). ``on_progress(done, total, text)`` is called after every step."""
    oc = cfg.orm
    rows, train, held = training_split(cfg, trajs, ", ".join(map(str, data)) if data else "the data")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from actors.model_store import resolve_model
    from learner.learner import Learner
    from learner.sft import sft_batches

    base = resolve_model(str(model or oc.model or cfg.rollout.model))
    tokenizer = AutoTokenizer.from_pretrained(base)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).to(device)
    learner = Learner(policy, cfg.learner.model_copy(update={"sft_lr": oc.lr}), micro_batch=oc.micro_batch)
    orm = OutcomeRewardModel(policy, tokenizer, oc, cfg.learner.precision)
    no_id, yes_id = orm.answer_ids
    prompts = [orm.prompt(t).token_ids for t in train]
    samples = [(ids + [yes_id if t.success else no_id], len(ids)) for ids, t in zip(prompts, train)]
    labels = [t.success for t in train]
    pad = orm.pad_id
    rng = random.Random(cfg.seed)
    per_epoch = -(-len(epoch_samples(samples, labels, oc.class_weighting, random.Random(0))) // oc.batch_size)
    total, step, losses, per_epoch_metrics = per_epoch * oc.epochs, 0, [], []
    t0 = time.perf_counter()
    before = measure(orm, held)
    for epoch in range(oc.epochs):
        epoch_losses = []
        for batch in sft_batches(epoch_samples(samples, labels, oc.class_weighting, rng), oc.batch_size, pad,
                                 seed=cfg.seed + epoch):
            epoch_losses.append(learner.sft_step(batch)["sft_loss"])
            step += 1
            if on_progress:
                on_progress(step, total, f"epoch {epoch + 1} loss {epoch_losses[-1]:.3f}")
        losses.extend(epoch_losses)
        held_metrics = measure(orm, held)
        per_epoch_metrics.append({"epoch": epoch + 1, "mean_loss": sum(epoch_losses) / len(epoch_losses),
                                  "held_out_accuracy": held_metrics["accuracy"]})
    wall = time.perf_counter() - t0

    def counts(part: list[Trajectory]) -> dict:
        return {"trajectories": len(part), "successes": sum(t.success for t in part),
                "tasks": len({t.task_id for t in part})}

    manifest = {
        "kind": "orm", "base_model": str(base), "saved_at": time.time(), "data": [str(d) for d in data or []],
        "seed": cfg.seed, "orm_config": oc.model_dump(), "learner_precision": cfg.learner.precision,
        "class_weighting": CLASS_WEIGHTING[oc.class_weighting], "answer_token_ids": {"no": no_id, "yes": yes_id},
        "counts": {"labelled": counts(rows), "train": counts(train), "held_out": counts(held),
                   "skipped_unlabelled": len(trajs) - len(rows)},
        "train_tasks": sorted({t.task_id for t in train}), "held_out_tasks": sorted({t.task_id for t in held}),
        "steps": step, "first_loss": losses[0], "last_loss": losses[-1], "wall_s": wall,
        "metrics": {"held_out_before": before, "held_out": held_metrics, "per_epoch": per_epoch_metrics},
    }
    _save(Path(out), learner, tokenizer, manifest)
    return manifest


def eval_orm(cfg: WebRLConfig, trajs: list[Trajectory], model: str | Path, *, include_train_tasks: bool = False,
             where: str = "the data") -> dict:
    """The ORM at ``model`` against the rule labels of ``trajs``. For a ``webrl orm train`` checkpoint the
    tasks it was trained on are left out (unless ``include_train_tasks``): only held-out tasks count."""
    rows = labelled(trajs, where)
    orm = OutcomeRewardModel.load(cfg, model)
    manifest = read_orm_manifest(model) if Path(model).is_dir() else None
    trained = set(manifest.get("train_tasks", [])) if manifest and not include_train_tasks else set()
    kept = [t for t in rows if t.task_id not in trained]
    if not kept:
        raise OrmDataError(f"every labelled trajectory in {where} is of a task {model} was trained on; give "
                           "trajectories of other tasks, or --include-train-tasks to measure on them anyway")
    report = measure(orm, kept)
    return {"model": str(model), "data": where, "labelled": len(rows), "skipped_unlabelled": len(trajs) - len(rows),
            "skipped_train_tasks": len(rows) - len(kept), "tasks": len({t.task_id for t in kept}), **report}
