"""The TaskSuite interface: a family of tasks the browser pool can run."""

from __future__ import annotations

from abc import ABC, abstractmethod

from reward.rules import RuleResult
from webrl.config import EnvConfig
from webrl.types import Task


class TaskSuite(ABC):
    """A suite lists its tasks, prepares a page for an episode and reads the page's reward.

    Suites live inside the process that owns the browser (the ``BrowserPool``); ``start`` brings up
    whatever they serve (always on ``env.bind_host``, 127.0.0.1 by default) and ``close`` stops it.
    """

    name: str

    def __init__(self, cfg: EnvConfig):
        self.cfg = cfg

    @abstractmethod
    def tasks(self) -> list[Task]:
        """Every task of the suite."""

    splits: tuple[str, ...] = ()  # named subsets (train, test, ...) of suites that have them

    def split(self, name: str) -> list[Task]:
        """The tasks of one split."""
        raise KeyError(f"suite '{self.name}' has no split '{name}'"
                       + (f"; its splits: {', '.join(self.splits)}" if self.splits else "; it has no splits: leave --split out"))

    def task(self, task_id: str) -> Task:
        for t in self.tasks():
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def adopt(self, task: Task) -> Task:
        """A task this suite does not list (the curriculum generated it from this suite's tasks, in another
        process) as it runs here: its site URLs made this process's own. Starts the suite's servers."""
        self.start()
        return task

    def start(self) -> None:
        """Start servers the suite's pages need. Idempotent."""

    def close(self) -> None:
        """Stop what ``start`` started."""

    async def prepare(self, context, task: Task, episode_id: str) -> None:
        """Called on the episode's fresh browser context before its start page loads: per-episode
        site state, cookies, a login's storage state."""

    async def judge(self, page, task: Task, episode_id: str, answer: str | None) -> RuleResult | None:
        """The final reward of an episode that ended (the agent exited, hit the step limit or was
        stopped by its caller) and each check's reason, from the suite's rule evaluators
        (``reward.rules.evaluate``); None: the page's own reward stands."""
        return None

    def discard(self, episode_id: str) -> None:
        """Forget what ``prepare`` made for the episode; called once it has ended."""

    async def begin(self, page, task: Task, seed: int | None) -> str:
        """Called once the start page has loaded: set the episode up, return the instruction."""
        return task.instruction or ""

    # A JavaScript function run in the page with every observation (same evaluation); its result is
    # handed to ``reward_from``. None: the page has no reward of its own (judged elsewhere).
    reward_js: str | None = None

    def reward_from(self, raw, task: Task) -> tuple[float, bool]:
        """(reward, done) from what ``reward_js`` returned (None if it threw or there is none)."""
        return 0.0, False

    async def reward(self, page, task: Task) -> tuple[float, bool]:
        """(reward, done) read on its own, outside an observation."""
        return self.reward_from(await page.evaluate(self.reward_js) if self.reward_js else None, task)
