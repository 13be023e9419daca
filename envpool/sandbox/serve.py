"""``webrl sites serve``: run the sandbox sites for a person to browse, until Ctrl-C.

Requests from a plain browser carry no episode cookie, so they all share the "browse" state: what
you change stays until the server stops. Episodes of the ``sandbox`` suite never see it.
"""

from __future__ import annotations

import time
from typing import Callable

from envpool.sandbox.process import SandboxServer
from webrl.config import EnvConfig

SITE_TITLES = {"shop": "Maple Market, the shop", "admin": "the shop's admin", "forum": "Pinewood Forum"}


def serve(cfg: EnvConfig, port_base: int | None = None, say: Callable[[str], None] = print,
          until: Callable[[], bool] = lambda: False) -> int:
    """Start the sites, print their URLs, wait for Ctrl-C (or ``until()``), stop them."""
    server = SandboxServer(cfg.sandbox, host=cfg.bind_host, port_base=port_base)
    server.start()
    try:
        say(f"sandbox sites (seed {cfg.sandbox.seed}, today {cfg.sandbox.today}, data built in {server.build_ms:.0f} ms):")
        for site, url in server.urls.items():
            say(f"  {site:<6} {url}/   {SITE_TITLES[site]}")
        say(f"  control API {server.control_url} (token {server.token})")
        if server.metrics_url:
            say(f"  metrics     {server.metrics_url}   (Prometheus)")
        say("Press Ctrl-C to stop.")
        while server.running and not until():
            time.sleep(0.2)
        if not server.running:
            say("the sandbox server exited")
            return 1
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.close()
