"""Metrics: the Grafana dashboard charts exactly the metrics the code defines (and every one of them), recording
outside Ray is a no-op that never raises, and the sandbox sites server answers /metrics on 127.0.0.1 with
its request counters, latency and live episode states. (That values recorded in Ray actors and the driver
reach Ray's Prometheus export: tests/test_control.py, on its local cluster.)"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest

from envpool.sandbox.metrics import SANDBOX_SERIES
from envpool.sandbox.process import SandboxServer
from webrl import metrics
from webrl.config import SandboxConfig

DASHBOARD = Path(__file__).resolve().parents[1] / "configs" / "grafana" / "webrl.json"
SERIES = re.compile(r"\b(?:ray_)?webrl_[a-z0-9_]+")


def _dashboard_series() -> dict[str, set[str]]:
    """Panel title -> the metric series its queries name."""
    panels = [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]
    return {p["title"]: {s for t in p["targets"] for s in SERIES.findall(t["expr"])} for p in panels}


def test_the_dashboard_charts_exactly_the_defined_metrics():
    by_panel = _dashboard_series()
    exported = {name: metrics.prometheus_names(name) for name in metrics.METRICS}
    known = set().union(*exported.values()) | set(SANDBOX_SERIES)
    for title, series in by_panel.items():
        assert series, f"panel {title!r} queries no webrl metric"
        assert series <= known, f"panel {title!r} queries undefined metrics {series - known}"
    charted = set().union(*by_panel.values())
    assert [n for n, names in exported.items() if not names & charted] == []  # every Ray metric has a panel
    sandbox_metrics = {s.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count") for s in SANDBOX_SERIES}
    assert all(any(c.startswith(m) for c in charted) for m in sandbox_metrics)
    assert all(m.name.startswith("webrl_") and m.description for m in metrics.METRICS.values())


def test_recording_outside_ray_is_a_no_op_that_never_raises():
    import ray

    if ray.is_initialized():
        pytest.skip("Ray is initialized in this process by an earlier test")
    made = metrics._ray_metric.cache_info().currsize
    for m in metrics.METRICS.values():
        getattr(metrics, {"counter": "inc", "gauge": "set_gauge", "histogram": "observe"}[m.kind])(m.name, 1, pool="p")
    metrics.observe("webrl_env_step_seconds", "not a number")  # type: ignore[arg-type]
    assert metrics._ray_metric.cache_info().currsize == made


def test_the_sandbox_server_serves_its_metrics_on_loopback_only_when_configured():
    with SandboxServer(SandboxConfig()) as plain:
        assert plain.metrics_url is None  # off by default
    with SandboxServer(SandboxConfig(metrics_port=0)) as server:
        assert server.metrics_url.startswith("http://127.0.0.1:")
        server.create("ep-1")
        server.create("ep-2")
        for _ in range(3):
            urllib.request.urlopen(server.urls["shop"] + "/", timeout=10).read()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(server.urls["forum"] + "/no-such-page", timeout=10)
        server.discard("ep-2")
        text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith("webrl_")}
    assert values['webrl_sandbox_requests_total{method="GET",site="shop",status="200"}'] == 3
    assert values['webrl_sandbox_requests_total{method="POST",site="control",status="200"}'] == 2
    assert values['webrl_sandbox_requests_total{method="GET",site="forum",status="404"}'] == 1
    assert values['webrl_sandbox_request_seconds_count{site="shop"}'] == 3
    assert values['webrl_sandbox_request_seconds_sum{site="shop"}'] > 0
    assert values["webrl_sandbox_episode_states"] == 1  # ep-1 alive, ep-2 discarded
