"""Any page as a task, for debugging observations: ``https://...`` or ``file:///path/x.html``.

The allowlist is the URL's own origin. A file is served over HTTP from its own folder on 127.0.0.1,
so the page reaches that folder and nothing else on the machine.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from envpool.allowlist import origin_of
from envpool.static_server import StaticServer
from envpool.suites.base import TaskSuite
from webrl.types import Task


def is_url(target: str) -> bool:
    return urlsplit(target).scheme in ("http", "https", "file")


class AdhocSuite(TaskSuite):
    name = "url"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._servers: dict[Path, StaticServer] = {}

    def tasks(self) -> list[Task]:
        return []

    def task(self, task_id: str) -> Task:
        u = urlsplit(task_id)
        if u.scheme == "file":
            path = Path(unquote(u.path))
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {path}")
            folder = path.parent
            if folder not in self._servers:
                self._servers[folder] = StaticServer(folder, host=self.cfg.bind_host)
            url = self._servers[folder].url + quote(path.name)
        elif u.scheme in ("http", "https"):
            url = task_id
        else:
            raise KeyError(task_id)
        return Task(id=task_id, suite=self.name, start_url=url, allowed_origins=[origin_of(url)])

    def close(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
