"""Browser-pool metrics through Ray's own metrics API (``webrl/metrics.py`` defines them), so the Ray
dashboard and its Prometheus endpoint show them. Outside a Ray process (tests, ``webrl env show``) they
are not recorded."""

from __future__ import annotations

from webrl import metrics


class PoolMetrics:
    def __init__(self, pool_tag: str):
        self.pool = pool_tag

    def step(self, suite: str, seconds: float) -> None:
        metrics.inc("webrl_env_steps", pool=self.pool, suite=suite)
        metrics.observe("webrl_env_step_seconds", seconds, pool=self.pool)

    def episode_ended(self, status: str, running: int) -> None:
        metrics.inc("webrl_env_episodes", pool=self.pool, status=status)
        metrics.set_gauge("webrl_browser_running_episodes", running, pool=self.pool)

    def launched(self) -> None:
        metrics.inc("webrl_browser_launches", pool=self.pool)
