"""BrowserPool: one Chromium, many episodes, each in a fresh context; survives crashes and hangs.

A plain asyncio class (testable without Ray); :func:`remote_pool` makes it a restartable Ray actor.

- ``reset(task_id, seed)`` opens an episode in a fresh context (waiting for a free one) and returns
  its :class:`EpisodeRecord` with the first observation and instruction.
- ``step(episode_id, action_text)`` parses and performs one action and returns an :class:`EnvStep`;
  it never raises for anything the page or the model did. Each step is bounded by
  ``browser.action_timeout_s`` and each episode by ``browser.episode_timeout_s``.
- ``close(episode_id)`` returns the full record. An episode that ends (done, truncated, timeout,
  interrupted) gives its context back at once; its record waits for ``close``.
- A crashed browser (its process killed, or failing the health probe) is relaunched; every episode
  it was running ends ``interrupted`` with the steps it had, never silently dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
import uuid

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

from envpool import allowlist as nav
from envpool.actions import format_action, parse_action
from envpool.chromium import browser_pids, find_executable
from envpool.executor import ActionError, KnownIds, execute, extra_time_s
from envpool.metrics import PoolMetrics
from envpool.observation import observe
from envpool.suites import Suites
from envpool.suites.base import TaskSuite
from webrl.config import EnvConfig
from webrl.types import Action, ActionKind, EnvStep, EpisodeRecord, EpisodeStatus, Observation, OutcomeSource, Task

log = logging.getLogger(__name__)


class _Interrupted(Exception):
    pass


class PoolBusy(RuntimeError):
    """No browser context came free in time."""


class _Episode:
    """One episode's browser context, pages and bookkeeping."""

    def __init__(self, record: EpisodeRecord, suite: TaskSuite, task: Task, deadline: float, timeout_s: float):
        self.record, self.suite, self.task, self.deadline = record, suite, task, deadline
        self.notes: list[str] = []
        self.guard = nav.NavigationGuard(
            nav.Allowlist(task.allowed_origins or [nav.origin_of(task.start_url)]), self.notes, timeout_s)
        self.context = None
        self.last_obs = Observation(url=task.start_url, html="")
        self.known: KnownIds | None = None  # the ids the last observation handed out
        self.released = False
        self.last_call = time.time()  # when its owner last reset or stepped it

    @property
    def pages(self) -> list:
        """Open pages of the episode, oldest first; the newest is the one the agent acts on."""
        return self.context.pages if self.context is not None else []

    @property
    def page(self):
        return self.pages[-1]

    def attach(self, page) -> None:
        async def on_dialog(dialog):
            self.notes.append(f"a {dialog.type} dialog said {dialog.message[:200]!r}; it was accepted")
            with contextlib.suppress(PlaywrightError):
                await dialog.accept()

        page.on("dialog", on_dialog)
        page.on("download", lambda d: self.notes.append(f"download of {d.url} blocked"))
        if self.pages and page is not self.pages[0]:  # a new tab: it may stay only inside the allowlist
            page.on("domcontentloaded", self._check_tab)

    async def _check_tab(self, page) -> None:
        if not self.guard.allowlist.allows(page.url):
            self.notes.append(f"closed a new tab at {page.url}: outside the allowed origins")
            with contextlib.suppress(PlaywrightError):
                await page.close()

    async def settle_pages(self) -> None:
        """Close new tabs that left the allowlist; the newest remaining page becomes the active one."""
        for page in self.pages[1:]:
            await self._check_tab(page)
        if len(self.pages) > 1:
            self.notes.append(f"acting on the newest tab: {self.page.url}")

    def take_notes(self) -> list[str]:
        notes = list(self.notes)
        self.notes.clear()  # in place: the allowlist route holds this list
        return notes


class BrowserPool:
    def __init__(self, cfg: EnvConfig | dict | None = None):
        self.cfg = cfg if isinstance(cfg, EnvConfig) else EnvConfig.model_validate(cfg or {})
        self.tag = uuid.uuid4().hex[:12]  # marks our Chromium's command line, to find its process
        self.suites = Suites(self.cfg)
        self._pw = None
        self._browser = None
        self._launch_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(self.cfg.browser.contexts)
        self._episodes: dict[str, _Episode] = {}
        self._health_task: asyncio.Task | None = None
        self.launches = 0
        self.stats = {"episodes": 0, "steps": 0, "interrupted": 0, "timeouts": 0}
        self._last_probe_ms: float | None = None
        self.metrics = PoolMetrics(self.tag)

    async def __aenter__(self) -> "BrowserPool":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.shutdown()

    # ---- browser lifecycle --------------------------------------------------------------------
    async def start(self) -> None:
        await self._ensure_browser()
        if self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop())

    async def _ensure_browser(self):
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._pw is None:
                self._pw = await async_playwright().start()
            b = self.cfg.browser
            error = None
            for attempt in range(b.relaunch_attempts):
                try:
                    browser = await self._pw.chromium.launch(
                        executable_path=find_executable(b), headless=b.headless,
                        args=[*b.launch_args, f"--webrl-pool={self.tag}"], timeout=b.navigation_timeout_s * 1000,
                    )
                    break
                except PlaywrightError as e:
                    error = e
                    log.warning("Chromium launch %d/%d failed: %s", attempt + 1, b.relaunch_attempts, e)
                    await asyncio.sleep(0.5 * (attempt + 1))
            else:
                raise RuntimeError(
                    f"Chromium would not start after {b.relaunch_attempts} tries: {error}. Run scripts/setup.sh, "
                    "or point WEBRL_CHROMIUM at a working Chromium."
                )
            browser.on("disconnected", self._on_disconnected)
            self._browser = browser
            self.launches += 1
            self.metrics.launched()
            if self.launches > 1:
                log.warning("Chromium relaunched (launch %d)", self.launches)
            return browser

    def _on_disconnected(self, browser) -> None:
        if browser is not self._browser:
            return
        self._browser = None
        for ep in list(self._episodes.values()):
            if ep.record.status is EpisodeStatus.running:
                self._finish(ep, EpisodeStatus.interrupted,
                             "the browser crashed during this episode; it was relaunched, retry the task in a fresh episode")
        asyncio.get_running_loop().create_task(self._ensure_browser())

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.browser.health_check_interval_s)
            self.reap_abandoned()
            try:
                await self.probe()
            except Exception as e:  # noqa: BLE001 - the loop must outlive any one failure
                log.warning("browser health check failed: %s", e)

    async def probe(self) -> bool:
        """Round-trip to the browser; a browser that does not answer in time is killed and relaunched."""
        browser = self._browser
        if browser is None or not browser.is_connected():
            await self._ensure_browser()
            return False
        t0 = time.perf_counter()
        try:
            async def ping():
                session = await browser.new_browser_cdp_session()
                await session.send("Browser.getVersion")
                await session.detach()

            await asyncio.wait_for(ping(), self.cfg.browser.action_timeout_s)
            self._last_probe_ms = (time.perf_counter() - t0) * 1000
            return True
        except (asyncio.TimeoutError, PlaywrightError) as e:
            log.warning("browser failed its health probe (%s); killing it", e)
            self.kill_browser()
            return False

    def reap_abandoned(self) -> list[str]:
        """End episodes nobody has stepped for ``browser.idle_timeout_s`` (their caller died: a crashed
        rollout worker) and forget ended ones nobody closed, so their contexts come back to the pool."""
        now, idle = time.time(), self.cfg.browser.idle_timeout_s
        reaped = []
        for eid, ep in list(self._episodes.items()):
            if now - ep.last_call < idle:
                continue
            if ep.record.status is EpisodeStatus.running:
                self._finish(ep, EpisodeStatus.timeout, f"nobody stepped the episode for {idle:.0f} s (its agent is gone?)")
            del self._episodes[eid]
            reaped.append(eid)
        return reaped

    def kill_browser(self) -> list[int]:
        """SIGKILL our Chromium (tests use this to simulate a crash). Returns the pids killed."""
        pids = browser_pids(self.tag)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids

    async def shutdown(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            self._health_task = None
        for ep in list(self._episodes.values()):
            if ep.record.status is EpisodeStatus.running:
                self._finish(ep, EpisodeStatus.interrupted, "the browser pool shut down")
        browser, self._browser = self._browser, None
        if browser is not None:
            with contextlib.suppress(PlaywrightError):
                await browser.close()
        if self._pw is not None:
            await self._pw.stop()
            self._pw = None
        self.suites.close()

    def _running(self) -> int:
        return sum(ep.record.status is EpisodeStatus.running for ep in self._episodes.values())

    async def health(self) -> dict:
        running = self._running()
        return {
            "alive": self._browser is not None and self._browser.is_connected(),
            "launches": self.launches,
            "restarts": max(0, self.launches - 1),
            "running_episodes": running,
            "free_contexts": self.cfg.browser.contexts - running,
            "last_probe_ms": self._last_probe_ms,
            **self.stats,
        }

    # ---- episodes -----------------------------------------------------------------------------
    def _finish(self, ep: _Episode, status: EpisodeStatus, reason: str | None = None) -> None:
        """End an episode: record why, give its context back (in the background), free its slot."""
        rec = ep.record
        if rec.status is not EpisodeStatus.running:
            return
        rec.status, rec.reason = status, reason
        rec.elapsed_s = time.time() - rec.started_at
        self.metrics.episode_ended(status.value, self._running())
        if status is EpisodeStatus.interrupted:
            self.stats["interrupted"] += 1
        elif status is EpisodeStatus.timeout:
            self.stats["timeouts"] += 1
        if ep.context is not None:
            asyncio.get_running_loop().create_task(self._close_context(ep.context))
            ep.context = None
        ep.suite.discard(rec.episode_id)
        if not ep.released:
            ep.released = True
            self._slots.release()

    async def _close_context(self, context) -> None:
        with contextlib.suppress(PlaywrightError, asyncio.TimeoutError):
            await asyncio.wait_for(context.close(), self.cfg.browser.action_timeout_s)

    async def reset(self, task_id: str | Task, seed: int | None = None) -> EpisodeRecord:
        """Open an episode of ``task_id`` (``miniwob/click-button``, or a URL; or a :class:`Task` that no suite
        lists, e.g. one the curriculum generated, run on its suite's pages) in a fresh context.

        Waits for a free context (up to ``browser.episode_timeout_s``, then raises :class:`PoolBusy`). The returned record carries ``episode_id``, ``instruction`` and
        ``first_observation``; if the start page could not be loaded its status says why.
        """
        suite, task = self.suites.resolve(task_id)
        if self._health_task is None:
            await self.start()
        b = self.cfg.browser
        try:
            await asyncio.wait_for(self._slots.acquire(), b.episode_timeout_s)
        except asyncio.TimeoutError:
            raise PoolBusy(
                f"no free browser context within {b.episode_timeout_s:.0f} s: all {b.contexts} are in use; "
                "close finished episodes (close(episode_id)) or raise env.browser.contexts"
            ) from None
        now = time.time()
        record = EpisodeRecord(episode_id=uuid.uuid4().hex, task_id=task.id, seed=seed, started_at=now,
                               # a page without a reward of its own is judged by the suite's rules or the ORM
                               reward_source=OutcomeSource.page if suite.reward_js else OutcomeSource.none)
        ep = _Episode(record, suite, task, deadline=now + b.episode_timeout_s, timeout_s=b.navigation_timeout_s)
        self._episodes[record.episode_id] = ep
        self.stats["episodes"] += 1
        try:
            await asyncio.wait_for(self._open(ep, seed), min(b.navigation_timeout_s + b.action_timeout_s, b.episode_timeout_s))
        except asyncio.TimeoutError:
            self._finish(ep, EpisodeStatus.timeout, f"the start page {task.start_url} did not load in time")
        except (PlaywrightError, _Interrupted) as e:
            if record.status is EpisodeStatus.running:
                self._finish(ep, EpisodeStatus.error, f"could not open {task.start_url}: {str(e).splitlines()[0]}")
        except Exception as e:  # noqa: BLE001 - the suite's set-up failed (a reset hook, a login): say so, free the slot
            log.exception("episode %s of %s could not be set up", record.episode_id, task.id)
            self._finish(ep, EpisodeStatus.error, f"could not set up {task.id}: {type(e).__name__}: {e}")
        return record.model_copy(deep=True)

    async def _open(self, ep: _Episode, seed: int | None) -> None:
        b = self.cfg.browser
        browser = await self._ensure_browser()
        ep.context = await browser.new_context(
            viewport={"width": b.viewport_width, "height": b.viewport_height},
            accept_downloads=False, service_workers="block",
        )
        await ep.guard.install(ep.context)
        await ep.suite.prepare(ep.context, ep.task, ep.record.episode_id)
        ep.context.on("page", ep.attach)
        page = await ep.context.new_page()  # the "page" event attaches it
        await page.goto(ep.task.start_url, wait_until="load", timeout=b.navigation_timeout_s * 1000)
        ep.record.instruction = await ep.suite.begin(page, ep.task, seed)
        await self._look(ep)
        ep.record.first_observation = ep.last_obs

    def _get(self, episode_id: str) -> _Episode:
        try:
            return self._episodes[episode_id]
        except KeyError:
            raise KeyError(f"no episode {episode_id!r} in this pool (closed already, or from another pool)") from None

    async def step(self, episode_id: str, action: str | Action) -> EnvStep:
        """Perform one action (model text or a parsed :class:`Action`) and observe the page."""
        ep = self._get(episode_id)
        ep.last_call = time.time()
        act = parse_action(action) if isinstance(action, str) else action
        rec, t0 = ep.record, time.perf_counter()
        if rec.status is not EpisodeStatus.running:
            obs = ep.last_obs.model_copy(update={"error": f"the episode has ended ({rec.status.value}): {rec.reason}"})
            return EnvStep(action=act, observation=obs, reward=rec.reward, status=rec.status)
        remaining = ep.deadline - time.time()
        allowed = self.cfg.browser.action_timeout_s + extra_time_s(act)
        budget = min(allowed, max(remaining, 0.0))
        try:
            step = await asyncio.wait_for(self._act(ep, act), budget)
        except asyncio.TimeoutError:
            if budget < allowed:
                reason = f"the episode ran past its limit of {self.cfg.browser.episode_timeout_s:.0f} s"
            else:
                reason = (f"{format_action(act)} did not finish within {budget:.0f} s "
                          "(the page may be stuck in a script); the episode was ended")
            self._finish(ep, EpisodeStatus.timeout, reason)
            step = self._ended_step(ep, act)
        except Exception as e:  # noqa: BLE001 - a step never raises for what the page did
            if rec.status is EpisodeStatus.running:  # the page died, not the browser
                if not isinstance(e, (_Interrupted, PlaywrightError)):
                    log.exception("episode %s failed", episode_id)
                self._finish(ep, EpisodeStatus.error, f"the page failed: {str(e).splitlines()[0] if str(e) else e!r}")
            step = self._ended_step(ep, act)
        step.elapsed_s = time.perf_counter() - t0
        self.metrics.step(ep.task.suite, step.elapsed_s)
        rec.steps.append(step)
        self.stats["steps"] += 1
        return step

    def _ended_step(self, ep: _Episode, act: Action) -> EnvStep:
        obs = ep.last_obs.model_copy(update={"error": ep.record.reason, "notes": ep.take_notes()})
        return EnvStep(action=act, observation=obs, reward=ep.record.reward, status=ep.record.status)

    async def _look(self, ep: _Episode, error: str | None = None, notes: list[str] | None = None):
        """Observe the active page (and read the suite's reward in the same evaluation); ``notes``
        default to what the environment noted since the last look."""
        state = await observe(ep.page, self.cfg.observation, reward_js=ep.suite.reward_js, error=error,
                              notes=ep.take_notes() if notes is None else notes)
        ep.last_obs, ep.known = state.observation, KnownIds(state.element_count, state.frame_ids)
        return state

    async def _settle_and_look(self, ep: _Episode, error: str | None, notes: list[str]):
        """Let the allowlist finish deciding what the action set off, sort out new tabs, then look.
        ``notes`` gathers the environment's notes across looks of one step."""
        await ep.guard.idle(self.cfg.browser.action_timeout_s)
        await ep.settle_pages()
        notes.extend(ep.take_notes())
        return await self._look(ep, error, list(notes))

    async def _act(self, ep: _Episode, act: Action) -> EnvStep:
        rec = ep.record
        error = f"invalid action: {act.error}" if act.kind is ActionKind.invalid else None
        timeout_s = self.cfg.browser.action_timeout_s
        navigations = ep.guard.navigations
        try:
            await execute(ep.page, act, timeout_s, ep.known)
        except ActionError as e:
            error = str(e)
        if rec.status is not EpisodeStatus.running:
            raise _Interrupted(rec.reason)
        notes: list[str] = []
        state = await self._settle_and_look(ep, error, notes)
        if state.pending_navigation:
            # the action set off a navigation that has not replaced the page yet (its request may not
            # even exist yet): wait for the allowlist to decide it and the new page to load, look again
            await ep.guard.wait_navigation(navigations, timeout_s)
            with contextlib.suppress(PlaywrightError):
                await ep.page.wait_for_load_state("domcontentloaded", timeout=timeout_s * 1000)
            state = await self._settle_and_look(ep, error, notes)
        rec.reward, done = ep.suite.reward_from(state.reward, ep.task)
        if act.kind is ActionKind.exit:
            rec.answer, done = act.argument, True
        status = EpisodeStatus.running
        if done:
            status = EpisodeStatus.done
            await self._judge(ep)
            self._finish(ep, status, "the agent exited" if act.kind is ActionKind.exit else "the page reported the task done")
        elif len(rec.steps) + 1 >= self.cfg.max_steps:
            status = EpisodeStatus.truncated
            await self._judge(ep)
            self._finish(ep, status, f"reached the step limit ({self.cfg.max_steps})")
        return EnvStep(action=act, observation=ep.last_obs, reward=rec.reward, status=status)

    async def _judge(self, ep: _Episode) -> None:
        """Let the suite's rule evaluator set the final reward of an episode that is ending."""
        rec = ep.record
        result = await ep.suite.judge(ep.page, ep.task, rec.episode_id, rec.answer)
        if result is not None:
            rec.reward, rec.reward_source, rec.reward_checks = result.reward, OutcomeSource.rule, result.explain()
            log.info("%s episode %s: reward %s\n  %s", ep.task.id, rec.episode_id, result.reward, "\n  ".join(rec.reward_checks))

    async def close(self, episode_id: str) -> EpisodeRecord:
        """End the episode if it still runs, free its context, and return its full record."""
        ep = self._get(episode_id)
        if ep.record.status is EpisodeStatus.running:
            with contextlib.suppress(PlaywrightError, asyncio.TimeoutError):  # the state stands as the agent left it
                await asyncio.wait_for(self._judge(ep), self.cfg.browser.action_timeout_s)
            self._finish(ep, EpisodeStatus.truncated, "closed by the caller")
        del self._episodes[episode_id]
        return ep.record

    async def episodes(self) -> list[str]:
        return list(self._episodes)


def remote_pool(cfg: EnvConfig, *, resources: dict[str, float] | None = None, **options):
    """Start a :class:`BrowserPool` as a Ray actor (restarted by Ray if its process dies). ``resources``:
    the custom Ray resources it asks for (``ray.placement.browser_pool``: a browser node of cluster.yaml)."""
    import ray

    from webrl.cluster import placement_options

    defaults = {"max_restarts": -1, "num_cpus": 1, "max_concurrency": 1000} | placement_options(resources or {})
    return ray.remote(**(defaults | options))(BrowserPool).remote(cfg)
