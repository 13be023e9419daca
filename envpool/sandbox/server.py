"""The sandbox sites' server: one process, one event loop, one port per site plus the control API.

    python -m envpool.sandbox.server --config-json '{"seed": 0}' [--host 127.0.0.1]

It builds the template databases (refusing broken seed data with the file and line), binds the
ports (``port_base + 0..3`` for shop, admin, forum and control, or free ones; ``metrics_port`` for
Prometheus' ``/metrics`` when set), prints one JSON line
``{"ready": true, "urls": {...}, "control": ..., "metrics": ..., "build_ms": ...}`` on stdout, and serves until its
stdin closes (its parent exited or closed it) or it gets SIGINT/SIGTERM. The control API's token
comes from the environment variable ``WEBRL_SANDBOX_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time

import uvicorn

from envpool.sandbox import admin, forum, shop
from envpool.sandbox.build import build_templates
from envpool.sandbox.control import build_control
from envpool.sandbox.metrics import SandboxMetrics
from envpool.sandbox.process import TOKEN_ENV
from envpool.sandbox.seed_data import SeedDataError, load_seed_data
from envpool.sandbox.states import StateStore
from webrl.config import SandboxConfig

SITES = ("shop", "admin", "forum")  # in port order; the control API comes after them
SITE_BUILDERS = {"shop": shop.build, "admin": admin.build, "forum": forum.build}


class StartupError(RuntimeError):
    """The server cannot start; the message says why and what to change."""


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port} ({e.strerror}); choose another port base "
                           "(--port-base, env.sandbox.port_base) or 0 for free ports") from None
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


def url_host(host: str) -> str:
    """The host to put in URLs: a wildcard bind address is reached through loopback."""
    return {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(host, f"[{host}]" if ":" in host else host)


def dispatcher(apps: dict[int, object]):
    """One ASGI app that hands each request to the site owning the port it came in on."""

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        await apps[scope["server"][1]](scope, receive, send)

    return app


def prepare(cfg: SandboxConfig, host: str, token: str):
    """Build the data and the apps, bind the ports: (uvicorn server, its sockets, the ready message)."""
    t0 = time.perf_counter()
    templates = build_templates(cfg, load_seed_data(cfg.data_dir))
    build_ms = (time.perf_counter() - t0) * 1000
    socks = [bind(host, cfg.port_base + i if cfg.port_base else 0) for i in range(len(SITES) + 1)]
    ports = [s.getsockname()[1] for s in socks]
    urls = {name: f"http://{url_host(host)}:{port}" for name, port in zip(SITES, ports)}
    store = StateStore(templates, cfg.max_episodes, cfg.episode_ttl_s)
    metrics = SandboxMetrics(lambda: len(store.episodes))
    apps = {port: metrics.timed(name, SITE_BUILDERS[name](store, cfg, urls).app()) for name, port in zip(SITES, ports)}
    apps[ports[-1]] = metrics.timed("control", build_control(store, token))
    metrics_url = None
    if cfg.metrics_port is not None:  # off unless configured; loopback unless env.sandbox.metrics_host says otherwise
        socks.append(bind(cfg.metrics_host, cfg.metrics_port))
        port = socks[-1].getsockname()[1]
        apps[port] = metrics.app()
        metrics_url = f"http://{url_host(cfg.metrics_host)}:{port}/metrics"
    config = uvicorn.Config(dispatcher(apps), log_level="warning", access_log=False, lifespan="off",
                            timeout_graceful_shutdown=2)
    ready = {"ready": True, "urls": urls, "control": f"http://{url_host(host)}:{ports[-1]}",
             "build_ms": round(build_ms, 1), "pid": os.getpid(), "metrics": metrics_url}
    return uvicorn.Server(config), socks, ready


def watch_stdin(server: uvicorn.Server) -> None:
    """Stop the server when stdin closes: the parent that started us has exited or let go."""

    def watch():
        while sys.stdin.buffer.read(4096):
            pass
        server.should_exit = True

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config-json", default="{}", help="env.sandbox as JSON (SandboxConfig)")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (env.bind_host)")
    ap.add_argument("--no-stdin-watch", action="store_true", help="keep serving when stdin closes")
    args = ap.parse_args(argv)
    token = os.environ.get(TOKEN_ENV)
    if not token:
        print(f"sandbox server: set {TOKEN_ENV} to the control API's token", file=sys.stderr)
        return 2
    try:
        cfg = SandboxConfig.model_validate_json(args.config_json)
        server, socks, ready = prepare(cfg, args.host, token)
    except (SeedDataError, StartupError, ValueError) as e:
        print(f"sandbox server: {e}", file=sys.stderr)
        return 2
    print(json.dumps(ready), flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nothing else goes to the pipe the parent stopped reading
    if not args.no_stdin_watch:
        watch_stdin(server)
    server.run(sockets=socks)
    return 0


if __name__ == "__main__":
    sys.exit(main())
