"""Start the sandbox server as a child process and talk to its control API.

    server = SandboxServer(cfg.env.sandbox, host=cfg.env.bind_host)
    server.start()                      # builds the data, opens the ports (about a second)
    server.urls["shop"]                 # http://127.0.0.1:<port>
    server.create("ep-1")               # a fresh copy of every site's state, in milliseconds
    server.query("ep-1", "shop", "SELECT COUNT(*) FROM cart_items")
    server.discard("ep-1")
    server.close()

The child holds the read end of a pipe on its stdin: when this process exits, however it exits, the
pipe closes and the child stops. A random token guards the control API.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from webrl.config import SandboxConfig

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds the envpool package
CONTROL_TIMEOUT_S = 10.0
TOKEN_ENV = "WEBRL_SANDBOX_TOKEN"  # how the server gets its control-API token (not argv: ps shows argv)
COOKIE = "webrl_episode"  # the cookie that tells the sites which episode's state a request works on


class SandboxStartError(RuntimeError):
    """The server did not come up; the message carries its own explanation (e.g. a seed-data line)."""


class ControlError(RuntimeError):
    """The control API refused a call; the message is the server's reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SandboxServer:
    def __init__(self, cfg: SandboxConfig, host: str = "127.0.0.1", port_base: int | None = None):
        self.cfg = cfg if port_base is None else cfg.model_copy(update={"port_base": port_base})
        self.host = host
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self.urls: dict[str, str] = {}
        self.control_url = ""
        self.metrics_url: str | None = None  # Prometheus /metrics, when env.sandbox.metrics_port is set
        self.build_ms = 0.0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "SandboxServer":
        """Start the child and wait for its ready line; raises :class:`SandboxStartError` with its reason."""
        if self.running:
            return self
        env = os.environ | {TOKEN_ENV: self.token,
                            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        errors = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "envpool.sandbox.server", "--config-json", self.cfg.model_dump_json(),
             "--host", self.host], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env)
        try:
            ready = self._wait_ready(errors)
        except BaseException:
            self.close()
            raise
        finally:
            errors.close()
        self.urls, self.control_url, self.build_ms = ready["urls"], ready["control"], ready["build_ms"]
        self.metrics_url = ready.get("metrics")
        return self

    def _wait_ready(self, errors) -> dict:
        deadline = time.monotonic() + self.cfg.start_timeout_s
        out = self.proc.stdout
        while time.monotonic() < deadline:
            readable, _, _ = select.select([out], [], [], 0.1)
            if readable:
                line = out.readline()
                if line:
                    return json.loads(line)
            if self.proc.poll() is not None:
                break
        errors.seek(0)
        reason = errors.read().decode(errors="replace").strip()
        if self.proc.poll() is None:
            reason = f"not ready after {self.cfg.start_timeout_s:.0f} s (env.sandbox.start_timeout_s). {reason}"
        raise SandboxStartError(f"the sandbox sites did not start: {reason or 'the server exited without a word'}")

    def close(self) -> None:
        """Close the child's stdin (it stops by itself), then make sure it is gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # ---- control API --------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        if not self.running:
            raise RuntimeError("the sandbox server is not running: call start() first")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.control_url + path, data=data, method=method,
                                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=CONTROL_TIMEOUT_S) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error", str(e))
            except ValueError:
                message = str(e)
            raise ControlError(e.code, message) from None

    def create(self, episode_id: str) -> float:
        """Give the episode a fresh copy of every site's state; returns the server's milliseconds."""
        return self._call("POST", f"/episodes/{episode_id}")["ms"]

    def discard(self, episode_id: str) -> bool:
        return self._call("DELETE", f"/episodes/{episode_id}")["discarded"]

    def query_rows(self, episode_id: str, site: str, sql: str, params: list | dict | None = None) -> dict:
        """``{"columns", "rows", "truncated"}`` of one read-only SELECT on the site's database in the
        episode's state (``browse``: the shared state); a write is refused with :class:`ControlError`."""
        return self._call("POST", f"/episodes/{episode_id}/query", {"site": site, "sql": sql, "params": params or []})

    def query(self, episode_id: str, site: str, sql: str, params: list | dict | None = None) -> list[dict]:
        """Rows (as dicts by column name) of one read-only SELECT; see :meth:`query_rows`."""
        out = self.query_rows(episode_id, site, sql, params)
        return [dict(zip(out["columns"], row)) for row in out["rows"]]

    def episodes(self) -> list[str]:
        return self._call("GET", "/episodes")["episodes"]

    def __enter__(self) -> "SandboxServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
