"""What the learner side records (definitions: ``webrl/metrics.py``), in the driver that drives the
learner group: each update's loss and tokens per second, each weight sync's seconds."""

from __future__ import annotations

from webrl import metrics


def update(model: str, out: dict, tokens: int, seconds: float) -> None:
    """One ``actor_step``/``critic_step`` (``model``: actor or critic) that took ``seconds`` on ``tokens``."""
    loss = out.get(f"{model}_loss")
    if loss is None:  # a skipped step (no sample counted) trained on nothing
        return
    metrics.set_gauge("webrl_learner_loss", float(loss), model=model)
    metrics.inc("webrl_learner_tokens", tokens, model=model)
    if seconds > 0:
        metrics.set_gauge("webrl_learner_tokens_per_second", tokens / seconds, model=model)


def weight_sync(method: str, seconds: float, version: int) -> None:
    """A published policy ``version`` reached the engines by ``method`` (object_store | broadcast) in ``seconds``."""
    metrics.observe("webrl_weight_sync_seconds", seconds, method=method)
    metrics.set_gauge("webrl_policy_version", version)
