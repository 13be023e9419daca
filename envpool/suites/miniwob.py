"""MiniWoB++: the 130 task pages shipped in the ``miniwob`` package, served from 127.0.0.1.

Only the package's HTML is used (it is installed without its Python dependencies), so it is found
without importing it. An episode loads the page, seeds ``Math.random`` with the episode's seed,
starts the task and reads the page's own reward (``WOB_RAW_REWARD_GLOBAL``, ``WOB_DONE_GLOBAL``).
"""

from __future__ import annotations

import asyncio
import importlib.util
from functools import cached_property
from pathlib import Path

from envpool.static_server import StaticServer
from envpool.suites.base import TaskSuite
from envpool.suites.miniwob_split import SPLITS
from webrl.types import Task


def miniwob_html_dir() -> Path:
    spec = importlib.util.find_spec("miniwob")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the 'miniwob' package is missing: run scripts/setup.sh (or pip install --no-deps miniwob)")
    return Path(next(iter(spec.submodule_search_locations))) / "html"


class MiniWoBSuite(TaskSuite):
    name = "miniwob"
    splits = tuple(SPLITS)  # train, heldout: the fixed split of envpool/suites/miniwob_split.py
    _server: StaticServer | None = None

    @cached_property
    def _names(self) -> list[str]:
        return sorted(p.stem for p in (miniwob_html_dir() / "miniwob").glob("*.html"))

    def start(self) -> None:
        if self._server is None:
            self._server = StaticServer(miniwob_html_dir(), host=self.cfg.bind_host)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def tasks(self) -> list[Task]:
        base = self._server.url if self._server else "http://127.0.0.1/"
        return [Task(id=f"miniwob/{n}", suite=self.name, start_url=f"{base}miniwob/{n}.html") for n in self._names]

    def split(self, name: str) -> list[Task]:
        if name not in SPLITS:
            return super().split(name)
        return [t for t in self.tasks() if t.id.split("/", 1)[1] in SPLITS[name]]

    def task(self, task_id: str) -> Task:
        name = task_id.split("/", 1)[-1]
        if name not in self._names:
            raise KeyError(task_id)
        self.start()
        return Task(id=f"miniwob/{name}", suite=self.name, start_url=f"{self._server.url}miniwob/{name}.html")

    async def begin(self, page, task: Task, seed: int | None) -> str:
        await page.evaluate(
            """([seed, maxTime]) => {
                if (seed !== null) Math.seedrandom(String(seed));
                core.EPISODE_MAX_TIME = maxTime;
                core.startEpisodeReal();
                const stats = document.getElementById("reward-display");  // the harness's own counters
                if (stats) stats.style.display = "none";
            }""",
            [seed, self.cfg.miniwob.episode_max_time_ms],
        )
        for _ in range(40):  # a few tasks build their problem asynchronously
            if await page.evaluate("typeof WOB_TASK_READY === 'undefined' || WOB_TASK_READY"):
                break
            await asyncio.sleep(0.05)
        # the natural-language tasks' utterance is an object: its text, and the fields it was made
        # from (the answer): the agent gets the text only
        return await page.evaluate("(u => typeof u === 'string' ? u : u.utterance)(core.getUtterance())")

    reward_js = "() => [WOB_RAW_REWARD_GLOBAL, WOB_DONE_GLOBAL]"

    def reward_from(self, raw, task: Task) -> tuple[float, bool]:
        if not raw:  # off the task page: no reward to read
            return 0.0, False
        return (1.0 if raw[0] > 0 else 0.0), bool(raw[1])
