"""A quiet static file server on a loopback port, in a daemon thread."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass


class StaticServer:
    """Serves ``root`` at ``http://<host>:<port>/``; ``host`` is 127.0.0.1 unless the config says otherwise."""

    def __init__(self, root: str | Path, host: str = "127.0.0.1"):
        self.root = Path(root)
        self._httpd = ThreadingHTTPServer((host, 0), functools.partial(_QuietHandler, directory=str(self.root)))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"static:{self.root.name}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
