"""One phase's learner update (DESIGN.md §4), as the phase driver runs it: the replay of past successes
through the confidence filter, the critic, the advantages, the KL-constrained actor, π_ref ← π."""

from __future__ import annotations

import logging

from learner.batches import StepSample, counted_rows, minibatches, pad_batch, step_advantages, step_samples
from learner.learner import NonFiniteLoss
from learner.replay_filter import ReplayCandidate, one_success_per_task, select_replay
from webrl.config import WebRLConfig
from webrl.types import Trajectory

log = logging.getLogger(__name__)


def _scored(group, method: str, samples: list[StepSample], pad_id: int, chunk: int, actions: bool) -> list:
    """``group.<method>`` over ``samples`` in chunks of ``chunk`` (memory), joined."""
    out = []
    for i in range(0, len(samples), chunk):
        out.extend(getattr(group, method)(pad_batch(samples[i:i + chunk], pad_id, actions=actions)).tolist())
    return out


def replay_steps(group, cfg: WebRLConfig, past: list[Trajectory], current_steps: int, pad_id: int,
                 seed: int) -> tuple[list[StepSample], list[StepSample], dict]:
    """The replayed steps: one successful trajectory per task from the past phases, each step's confidence
    under π_ref in (confidence_low, confidence_high], at most max_ratio × ``current_steps``. Returns (picked
    steps, every step of their trajectories (for V(s_{t+1})), counts)."""
    keep = set(one_success_per_task((t.id, t.task_id, t.outcome.reward, t.phase) for t in past).values())
    kept = [t for t in past if t.id in keep]
    every = step_samples(kept, cfg.learner.context_tokens)
    candidates = [s for s in every if s.trainable]
    r = cfg.replay
    picked: list[StepSample] = []
    if candidates and r.max_ratio > 0:
        logp = _scored(group, "reference_logprobs", candidates, pad_id, cfg.learner.batch_size, actions=True)
        by_id = {f"{s.trajectory_id}#{s.index}": s for s in candidates}
        chosen = select_replay([ReplayCandidate(f"{s.trajectory_id}#{s.index}", s.task_id, lp)
                                for s, lp in zip(candidates, logp)], current_steps, low=r.confidence_low,
                               high=r.confidence_high, max_ratio=r.max_ratio, seed=seed)
        picked = [by_id[c.step_id] for c in chosen]
    counts = {"past_trajectories": len(kept), "past_steps": len(candidates), "replayed_steps": len(picked)}
    return picked, every, counts


def _last(results: list[dict], key: str) -> float | None:
    values = [r[key] for r in results if key in r]
    return values[-1] if values else None


def phase_update(group, cfg: WebRLConfig, trajs: list[Trajectory], past: list[Trajectory], *, pad_id: int,
                 phase: int) -> tuple[dict, dict]:
    """Train on the phase: ``trajs`` (judged) and the replay drawn from ``past`` (judged, earlier phases).
    Returns (replay counts, learner figures)."""
    lc, seed = cfg.learner, cfg.seed + phase
    current = step_samples(trajs, lc.context_tokens)
    current_actions = [s for s in current if s.trainable]
    replayed, replay_all, replay = replay_steps(group, cfg, past, len(current_actions), pad_id, seed)
    replay["current_steps"] = len(current_actions)
    critic_set = current + replayed
    critic, actor = [], []
    for epoch in range(lc.epochs_per_phase):  # the critic first: the advantages read its values
        for chunk in minibatches(critic_set, lc.batch_size, seed=seed * 1000 + epoch, multiple=len(group.ranks)):
            critic.append(group.critic_step(pad_batch(chunk, pad_id, actions=False)))
    actor_set = current_actions + replayed
    if actor_set:
        valued = current + [s for s in replay_all if s.key not in {r.key for r in current}]
        heads = _scored(group, "head_values", valued, pad_id, lc.batch_size, actions=False)
        values = {s.key: min(h) for s, h in zip(valued, heads)}
        advantage = dict(zip((s.key for s in actor_set), step_advantages(actor_set, values, lc).tolist()))
        for epoch in range(lc.epochs_per_phase):
            for chunk in minibatches(actor_set, lc.batch_size, seed=seed * 1000 + 500 + epoch, multiple=len(group.ranks)):
                chunk = counted_rows(chunk, advantage, lc.actor_loss, len(group.ranks))
                batch = pad_batch(chunk, pad_id)
                batch.advantage = batch.outcome.new_tensor([advantage[s.key] for s in chunk])
                if not cfg.train.kl_constraint:
                    group.new_phase()  # ablation: π_ref = π before each step, no constraint accumulates
                try:
                    actor.append(group.actor_step(batch))
                except NonFiniteLoss as e:
                    log.warning("phase %d: an actor step was skipped: %s", phase, e)
                    actor.append({"skipped": str(e)})
    group.new_phase()  # π_ref ← π: the next phase's constraint is against the policy this phase ends with
    learner = {"critic_steps": sum("skipped" not in r for r in critic), "actor_steps": sum("skipped" not in r for r in actor),
               "skipped": [r["skipped"] for r in critic + actor if "skipped" in r],
               "critic_loss": _last(critic, "critic_loss"), "actor_loss": _last(actor, "actor_loss"),
               "positive_advantages": sum(a > 0 for a in advantage.values()) if actor_set else 0,
               "samples": len(actor_set)}
    return replay, learner
