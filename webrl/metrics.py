"""Every metric webrl records (DESIGN.md §5), in one table, and a recorder that sends values to Ray's own
metrics API (``ray.util.metrics``), so the Ray dashboard and its Prometheus endpoint show them.

Where they are recorded: browser pools (``envpool/metrics.py``), rollout workers and the fleet
(``actors/``), the learner group (``learner/group.py``) and the ``webrl train`` driver (``webrl/train.py``).
Ray exports each one as ``ray_<name>`` (counters also as ``ray_<name>_total``, histograms as
``ray_<name>_bucket``/``_sum``/``_count``); ``configs/grafana/webrl.json`` charts them, and a test keeps the
two in step. The sandbox sites server runs outside Ray and has its own ``prometheus-client`` metrics
(``envpool/sandbox/metrics.py``).

Recording is cheap (the Ray metric objects are made once per process) and never breaks a run: outside a
Ray process (tests, ``webrl env show``) or if Ray refuses a value, nothing is recorded.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Kind = Literal["counter", "gauge", "histogram"]
SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()  # histograms only


METRICS: dict[str, Metric] = {m.name: m for m in (
    # browser pools (envpool/metrics.py)
    Metric("webrl_env_steps", "counter", "Environment steps taken", ("pool", "suite")),
    Metric("webrl_env_step_seconds", "histogram", "Seconds per environment step (action + observation)", ("pool",),
           (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
    Metric("webrl_env_episodes", "counter", "Episodes ended in a browser pool, by status", ("pool", "status")),
    Metric("webrl_browser_launches", "counter", "Chromium launches (first start and relaunches)", ("pool",)),
    Metric("webrl_browser_running_episodes", "gauge", "Episodes running in the pool", ("pool",)),
    # rollout workers (actors/rollout_worker.py)
    Metric("webrl_rollout_generated_tokens", "counter", "Tokens the worker's engine generated", ("worker",)),
    Metric("webrl_engine_tokens_per_second", "gauge", "The engine's generated tokens per second of generation",
           ("worker",)),
    Metric("webrl_rollout_episode_seconds", "histogram", "Seconds from an episode's start to its end", ("worker", "mode"),
           SECONDS),
    Metric("webrl_rollout_episodes", "counter", "Episodes finished by rollout workers (success: the rule or page "
           "reward, before the ORM)", ("suite", "phase", "mode", "success")),
    # the rollout fleet (actors/fleet.py, in the driver)
    Metric("webrl_rollout_staleness", "histogram", "Policy versions the finished episode's weights lagged the latest "
           "published version", ("mode",), (0.5, 1.5, 2.5, 4.5, 9.5)),  # integer lags: le=0.5 counts 0
    Metric("webrl_rollout_workers", "gauge", "Rollout workers: active (not retiring)"),
    Metric("webrl_browser_pools", "gauge", "BrowserPool actors the workers draw browser contexts from"),
    # the learner group (learner/group.py, in the driver)
    Metric("webrl_weight_sync_seconds", "histogram", "Seconds from a publish until every engine holds the weights",
           ("method",), (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)),
    Metric("webrl_learner_tokens", "counter", "Tokens (prompt and action) the learner trained on", ("model",)),
    Metric("webrl_learner_tokens_per_second", "gauge", "Tokens per second of the learner's last update", ("model",)),
    Metric("webrl_learner_loss", "gauge", "Loss of the learner's last update", ("model",)),
    Metric("webrl_policy_version", "gauge", "The latest published policy version"),
    # the webrl train driver (webrl/train.py)
    Metric("webrl_phase", "gauge", "The phase the run is in"),
    Metric("webrl_success_rate", "gauge", "Success rate of a phase's judged episodes (rule reward or ORM), per suite "
           "and split", ("suite", "phase", "split")),
    Metric("webrl_replay_size", "gauge", "Trajectories in the run's replay buffer"),
    Metric("webrl_curriculum_tasks", "gauge", "Tasks the curriculum generated, kept and rejected for a phase",
           ("phase", "outcome")),
)}


@functools.cache
def _ray_metric(name: str):
    """The Ray metric object for ``name`` (made once per process); None outside Ray."""
    try:
        import ray
        from ray.util import metrics
    except ImportError:  # pragma: no cover - ray is a dependency
        return None
    if not ray.is_initialized():
        return None
    m = METRICS[name]
    if m.kind == "counter":
        return metrics.Counter(m.name, m.description, tag_keys=m.tags)
    if m.kind == "gauge":
        return metrics.Gauge(m.name, m.description, tag_keys=m.tags)
    return metrics.Histogram(m.name, m.description, boundaries=list(m.boundaries), tag_keys=m.tags)


def _tags(m: Metric, tags: dict) -> dict[str, str]:
    return {k: str(tags.get(k, "")) for k in m.tags}


def _record(name: str, value: float, tags: dict) -> None:
    try:
        metric = _ray_metric(name) if ray_ready() else None
        if metric is None:
            return
        t = _tags(METRICS[name], tags)
        kind = METRICS[name].kind
        if kind == "counter":
            if value > 0:
                metric.inc(value, t)
        elif kind == "gauge":
            metric.set(value, t)
            _keep_gauge(name, value, t)
        else:
            metric.observe(value, t)
    except Exception as e:  # noqa: BLE001 - a metric must never break a run
        _warn_once(name, str(e))


def ray_ready() -> bool:
    """Whether this process is connected to Ray (only then is anything recorded)."""
    import sys

    ray = sys.modules.get("ray")  # no import: a process that never used Ray records nothing, at no cost
    return ray is not None and ray.is_initialized()


_warned: set[str] = set()
GAUGE_REFRESH_S = 1.0
_gauges: dict[tuple[str, tuple], float] = {}  # (name, tags) -> the value last set in this process
_refresher: threading.Thread | None = None


def _keep_gauge(name: str, value: float, tags: dict[str, str]) -> None:
    """Ray exports a gauge value only after it was set and drops it from its Prometheus export a couple of
    report intervals later; a daemon thread sets each gauge's last value again every second, so that a value
    that changes rarely (the policy version, the replay size) stays on the dashboard while the process lives."""
    global _refresher
    _gauges[(name, tuple(sorted(tags.items())))] = value
    if _refresher is None:
        _refresher = threading.Thread(target=_refresh_gauges, name="webrl-metrics-gauges", daemon=True)
        _refresher.start()


def _refresh_gauges() -> None:
    while True:
        time.sleep(GAUGE_REFRESH_S)
        if not ray_ready():
            continue
        for (name, tags), value in list(_gauges.items()):
            try:
                _ray_metric(name).set(value, dict(tags))
            except Exception as e:  # noqa: BLE001 - a metric must never break a run
                _warn_once(name, str(e))


def _warn_once(name: str, error: str) -> None:
    if name not in _warned:
        _warned.add(name)
        log.warning("metric %s not recorded: %s", name, error)


def inc(name: str, value: float = 1, **tags) -> None:
    """Add ``value`` to the counter ``name``."""
    _record(name, value, tags)


def set_gauge(name: str, value: float, **tags) -> None:
    """Set the gauge ``name``."""
    _record(name, value, tags)


def observe(name: str, value: float, **tags) -> None:
    """Add one observation to the histogram ``name``."""
    _record(name, value, tags)


def prometheus_names(name: str) -> set[str]:
    """The series names Ray's Prometheus export gives the metric ``name``."""
    base = f"ray_{name}"
    kind = METRICS[name].kind
    if kind == "counter":
        return {base, base + "_total"}
    if kind == "histogram":
        return {base + "_bucket", base + "_sum", base + "_count"}
    return {base}


# ---- the webrl train driver --------------------------------------------------------------------
def phase_finished(entry: dict) -> None:
    """A phase's summary (``Trainer.phase``): judged success per suite and split, curriculum counts."""
    k = entry["phase"]
    for split in ("train", "test"):
        for suite, row in ((entry.get(split) or {}).get("sites") or {}).items():
            if row.get("success_rate") is not None:
                set_gauge("webrl_success_rate", row["success_rate"], suite=suite, phase=k, split=split)
    cur = entry.get("curriculum") or {}
    for outcome in ("generated", "kept", "rejected"):
        if isinstance(cur.get(outcome), (int, float)):
            set_gauge("webrl_curriculum_tasks", cur[outcome], phase=cur.get("phase", k + 1), outcome=outcome)


def run_progress(phase: int, replay_size: int | None) -> None:
    set_gauge("webrl_phase", phase)
    if replay_size is not None:
        set_gauge("webrl_replay_size", replay_size)
