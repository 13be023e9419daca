"""Browser-pool metrics through Ray's own metrics API, so the Ray dashboard and its Prometheus
endpoint show them. Outside a Ray process (tests, ``webrl env show``) they are not recorded."""

from __future__ import annotations

import functools


class PoolMetrics:
    def __init__(self, pool_tag: str):
        self.tags = {"pool": pool_tag}
        self._m = self._create()

    @staticmethod
    @functools.cache
    def _create():
        try:
            import ray
            from ray.util import metrics
        except ImportError:  # pragma: no cover - ray is a dependency
            return None
        if not ray.is_initialized():
            return None
        keys = ("pool",)
        return {
            "steps": metrics.Counter("webrl_env_steps", "Environment steps taken", tag_keys=keys + ("suite",)),
            "step_s": metrics.Histogram("webrl_env_step_seconds", "Seconds per environment step (action + observation)",
                                        boundaries=[0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], tag_keys=keys),
            "episodes": metrics.Counter("webrl_env_episodes", "Episodes ended, by status", tag_keys=keys + ("status",)),
            "launches": metrics.Counter("webrl_browser_launches", "Chromium launches (first start and relaunches)",
                                        tag_keys=keys),
            "running": metrics.Gauge("webrl_browser_running_episodes", "Episodes running in the pool", tag_keys=keys),
        }

    def step(self, suite: str, seconds: float) -> None:
        if self._m:
            self._m["steps"].inc(1, {**self.tags, "suite": suite})
            self._m["step_s"].observe(seconds, self.tags)

    def episode_ended(self, status: str, running: int) -> None:
        if self._m:
            self._m["episodes"].inc(1, {**self.tags, "status": status})
            self._m["running"].set(running, self.tags)

    def launched(self) -> None:
        if self._m:
            self._m["launches"].inc(1, self.tags)
