"""What the rollout side records (definitions: ``webrl/metrics.py``): each finished episode in its
rollout worker, and the fleet's view (staleness, worker and pool counts) in the driver."""

from __future__ import annotations

from webrl import metrics
from webrl.types import Trajectory


def episode_finished(worker_id: str, traj: Trajectory, engine_info: dict) -> None:
    """An episode ended on ``worker_id``: its latency, tokens and outcome, and the engine's speed."""
    tokens = sum(len(s.action_token_ids) for s in traj.steps)
    metrics.inc("webrl_rollout_generated_tokens", tokens, worker=worker_id)
    if engine_info.get("tokens_per_s") is not None:
        metrics.set_gauge("webrl_engine_tokens_per_second", engine_info["tokens_per_s"], worker=worker_id)
    if "total_s" in traj.timings:
        metrics.observe("webrl_rollout_episode_seconds", traj.timings["total_s"], worker=worker_id, mode=traj.mode)
    metrics.inc("webrl_rollout_episodes", suite=traj.suite, phase=traj.phase, mode=traj.mode,
                success=str(traj.success).lower())


def episode_staleness(lag: int, mode: str) -> None:
    """Policy versions the weights an episode ran with lagged the latest published version."""
    metrics.observe("webrl_rollout_staleness", max(lag, 0), mode=mode)


def fleet_size(workers: int, pools: int) -> None:
    metrics.set_gauge("webrl_rollout_workers", workers)
    metrics.set_gauge("webrl_browser_pools", pools)
