"""Task suites, addressed as ``<suite>/<task>`` (``miniwob/click-button``, ``webarena/12``) or by URL."""

from __future__ import annotations

import difflib

from envpool.suites.adhoc import AdhocSuite, is_url
from envpool.suites.base import TaskSuite
from envpool.suites.miniwob import MiniWoBSuite
from envpool.suites.sandbox import SandboxSuite
from envpool.suites.webarena import WebArenaSuite
from webrl.config import EnvConfig
from webrl.types import Task

SUITE_CLASSES: dict[str, type[TaskSuite]] = {"miniwob": MiniWoBSuite, "sandbox": SandboxSuite, "webarena": WebArenaSuite}


class UnknownTask(KeyError):
    def __str__(self) -> str:
        return self.args[0]


class Suites:
    """One instance of every suite, sharing a config; resolves task ids to (suite, task)."""

    def __init__(self, cfg: EnvConfig):
        self.by_name: dict[str, TaskSuite] = {name: cls(cfg) for name, cls in SUITE_CLASSES.items()}
        self.adhoc = AdhocSuite(cfg)

    def resolve(self, task_id: str | Task) -> tuple[TaskSuite, Task]:
        """(suite, task) of a task id; a :class:`Task` given whole (a generated one) runs on its suite's pages
        (:meth:`TaskSuite.adopt`)."""
        if isinstance(task_id, Task):
            suite = self.by_name.get(task_id.suite)
            if suite is None:
                raise UnknownTask(f"task '{task_id.id}' names the unknown suite '{task_id.suite}'; "
                                  f"suites: {', '.join(self.by_name)}")
            return suite, suite.adopt(task_id)
        if is_url(task_id):
            return self.adhoc, self.adhoc.task(task_id)
        name = task_id.split("/", 1)[0]
        suite = self.by_name.get(name)
        if suite is None:
            raise UnknownTask(f"unknown suite '{name}' in '{task_id}'; suites: {', '.join(self.by_name)}, or give a URL")
        try:
            return suite, suite.task(task_id)
        except KeyError:
            ids = [t.id for t in suite.tasks()]
            close = difflib.get_close_matches(task_id, ids, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else "; `webrl env list` shows them all"
            raise UnknownTask(f"no task '{task_id}'{hint}") from None

    def select(self, suite: str, names: list[str] | None = None, split: str | None = None) -> list[Task]:
        """Tasks of ``suite``: the named ones (``click-button`` or ``miniwob/click-button``), else the
        given split, else all of them. Unknown names raise :class:`UnknownTask` with suggestions."""
        if suite not in self.by_name:
            hint = difflib.get_close_matches(suite, list(self.by_name), n=1)
            raise UnknownTask(f"unknown suite '{suite}'" + (f"; did you mean '{hint[0]}'?" if hint else "")
                              + f" (suites: {', '.join(self.by_name)})")
        pool = self.by_name[suite].split(split) if split else self.by_name[suite].tasks()
        if not names:
            return pool
        by_id = {t.id: t for t in pool}
        picked = []
        for name in names:
            task_id = name if name.startswith(f"{suite}/") else f"{suite}/{name}"
            if task_id not in by_id:
                self.resolve(task_id)  # raises with suggestions when the task does not exist at all
                raise UnknownTask(f"task '{task_id}' is not in split '{split}' of {suite}")
            picked.append(by_id[task_id])
        return picked

    def all_tasks(self) -> list[Task]:
        return [t for suite in self.by_name.values() for t in suite.tasks()]

    def close(self) -> None:
        for suite in [*self.by_name.values(), self.adhoc]:
            suite.close()
