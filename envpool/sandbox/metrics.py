"""The sandbox sites server's metrics, through ``prometheus-client``: the server runs outside Ray, so it
serves its own ``/metrics`` on ``env.sandbox.metrics_port`` (off unless set; bound to
``env.sandbox.metrics_host``, 127.0.0.1 by default).

- ``webrl_sandbox_requests_total{site, method, status}``: requests answered, by site and HTTP status;
- ``webrl_sandbox_request_seconds{site}``: seconds to answer one (a histogram);
- ``webrl_sandbox_episode_states``: episode states alive (read from the state store when scraped).
"""

from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_asgi_app

# the series names a scrape shows; configs/grafana/webrl.json charts them (a test keeps the two in step)
SANDBOX_SERIES = ("webrl_sandbox_requests_total", "webrl_sandbox_request_seconds_bucket",
                  "webrl_sandbox_request_seconds_sum", "webrl_sandbox_request_seconds_count",
                  "webrl_sandbox_episode_states")


class SandboxMetrics:
    """The server's metrics in a registry of their own, and the ASGI pieces that record and serve them."""

    def __init__(self, live_episodes: Callable[[], int]):
        self.registry = CollectorRegistry()
        self.requests = Counter("webrl_sandbox_requests", "Requests the sandbox sites answered",
                                ("site", "method", "status"), registry=self.registry)
        self.seconds = Histogram("webrl_sandbox_request_seconds", "Seconds the sandbox sites took to answer a request",
                                 ("site",), buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                 registry=self.registry)
        self.episodes = Gauge("webrl_sandbox_episode_states", "Episode states alive in the sandbox server",
                              registry=self.registry)
        self.episodes.set_function(live_episodes)

    def app(self):
        """The ASGI app that answers scrapes (``GET /metrics``)."""
        return make_asgi_app(self.registry)

    def timed(self, site: str, app):
        """``app`` with each HTTP request it answers counted and timed under ``site``."""

        async def recorded(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            t0, status = time.perf_counter(), [500]

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                self.requests.labels(site, scope.get("method", ""), str(status[0])).inc()
                self.seconds.labels(site).observe(time.perf_counter() - t0)

        return recorded
