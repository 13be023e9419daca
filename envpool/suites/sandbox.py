"""The ``sandbox`` suite: tasks on the bundled shop, admin and forum sites (``envpool/sandbox``).

The suite starts the sites' server (one child process, one port per site) the first time a task is
resolved. Each episode gets its own copy of the sites' state: ``prepare`` creates it and sets the
``webrl_episode`` cookie on the context for every site origin, ``judge`` scores the end state with
:func:`reward.rules.evaluate` (string_match, url_match, program_html, and ``state_check`` queries on
the episode's own databases), and ``discard`` drops it. Tasks come from the JSONL files in
``envpool/sandbox/tasks/`` or ``env.sandbox.tasks_dir`` (see :mod:`envpool.sandbox.task_specs`).
"""

from __future__ import annotations

import asyncio
import logging
from functools import cached_property
from pathlib import Path

from envpool.allowlist import origin_of
from envpool.sandbox.process import COOKIE, ControlError, SandboxServer
from envpool.sandbox.task_specs import TASKS_DIR, TaskSpec, load_task_specs, substitute
from envpool.suites.base import TaskSuite
from reward.judge import load_judge
from reward.rule_config import parse_eval_config
from reward.rules import RuleResult, evaluate
from webrl.types import Task

log = logging.getLogger(__name__)


class SandboxSuite(TaskSuite):
    name = "sandbox"
    splits = ("train", "test")

    def __init__(self, cfg):
        super().__init__(cfg)
        self._server: SandboxServer | None = None

    # ---- the server ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._server is None or not self._server.running:
            self._server = SandboxServer(self.cfg.sandbox, host=self.cfg.bind_host).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def server(self) -> SandboxServer:
        """The running server (started on first use)."""
        self.start()
        return self._server

    @property
    def urls(self) -> dict[str, str]:
        """Site name -> base URL of the live sites (empty until started)."""
        return dict(self._server.urls) if self._server is not None else {}

    # ---- tasks --------------------------------------------------------------------------------
    @cached_property
    def specs(self) -> dict[str, TaskSpec]:
        folder = Path(self.cfg.sandbox.tasks_dir) if self.cfg.sandbox.tasks_dir else TASKS_DIR
        if folder == TASKS_DIR and not folder.is_dir():  # no bundled task files (yet): no tasks
            return {}
        return {s.task_id: s for s in load_task_specs(folder, check_eval=parse_eval_config)}

    def _task(self, spec: TaskSpec) -> Task:
        """The task with the live sites' URLs (placeholders stay until the server has started)."""
        urls = self.urls
        return Task(id=spec.task_id, suite=self.name, instruction=spec.intent, start_url=substitute(spec.start_url, urls),
                    evaluator=substitute(spec.eval, urls), oracle=spec.oracle or None,
                    allowed_origins=[origin_of(u) for u in urls.values()])

    def tasks(self) -> list[Task]:
        return [self._task(s) for s in self.specs.values()]

    def split(self, name: str) -> list[Task]:
        if name not in self.splits:
            return super().split(name)
        return [self._task(s) for s in self.specs.values() if s.split == name]

    def task(self, task_id: str) -> Task:
        spec = self.specs.get(task_id)
        if spec is None:
            raise KeyError(task_id)
        self.start()
        return self._task(spec)

    def adopt(self, task: Task) -> Task:
        """A generated sandbox task (its start URL still holds a site placeholder, e.g. ``__SHOP__/``) on the
        live sites: placeholders replaced, every site origin allowed, as for the suite's own tasks."""
        self.start()
        urls = self.urls
        return task.model_copy(update={"start_url": substitute(task.start_url, urls),
                                       "allowed_origins": [origin_of(u) for u in urls.values()]})

    # ---- episodes -----------------------------------------------------------------------------
    async def prepare(self, context, task: Task, episode_id: str) -> None:
        """A fresh copy of the sites' state for the episode, and its cookie on every site origin."""
        server = self.server
        await asyncio.to_thread(server.create, episode_id)
        await context.add_cookies([{"name": COOKIE, "value": episode_id, "url": url} for url in server.urls.values()])

    def query(self, episode_id: str, site: str, sql: str, params: list | dict | None = None) -> list[dict]:
        """Rows of a read-only SELECT on ``site``'s database in the episode's state (for checks)."""
        return self.server.query(episode_id, site, sql, params)

    @cached_property
    def fuzzy_judge(self):
        return load_judge(self.cfg.sandbox.fuzzy_judge)

    async def judge(self, page, task: Task, episode_id: str, answer: str | None) -> RuleResult | None:
        """The episode's reward from the task's rule evaluators; None for tasks without an ``eval``."""
        if not task.evaluator:
            return None
        server = self.server

        async def state(site: str, sql: str) -> list[list]:
            try:
                return (await asyncio.to_thread(server.query_rows, episode_id, site, sql))["rows"]
            except ControlError as e:
                raise ValueError(str(e)) from None

        return await evaluate(task.evaluator, answer=answer, page=page, state=state, judge=self.fuzzy_judge,
                              intent=task.instruction or "", task_id=task.id, sites=server.urls)

    def discard(self, episode_id: str) -> None:
        if self._server is None or not self._server.running:
            return
        try:
            self._server.discard(episode_id)
        except (ControlError, OSError) as e:  # the state expires on its own (env.sandbox.episode_ttl_s)
            log.warning("could not discard the sandbox state of episode %s: %s", episode_id, e)
