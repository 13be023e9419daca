"""WebArena-Lite: the 165 tasks WebRL reports on, run against WebArena sites you host yourself.

**Tasks.** The task configs ship in the ``browsergym-webarenalite`` package
(``browsergym/webarenalite/test_webarena_lite.raw.json``), installed ``--no-deps`` by
``scripts/setup.sh``; the file is found through the package's metadata, without importing it. Task
``webarena/<n>`` is WebArena-Lite's ``task_id`` n (0-164); its instruction is the config's ``intent``.
Every config is validated when the suite loads (an unknown site or a malformed ``eval`` is refused,
naming the task).

**Sites.** WebArena's sites are Docker images (shop, shop admin, Postmill forum, GitLab, OpenStreetMap,
Kiwix Wikipedia, homepage) that you run; their base URLs come from ``env.webarena.urls.<site>`` and
replace the ``__SHOPPING__``, ``__SHOPPING_ADMIN__``, ``__REDDIT__``, ``__GITLAB__``, ``__MAP__``,
``__WIKIPEDIA__`` and ``__HOMEPAGE__`` placeholders everywhere in a task's config. Without them the
tasks still list (placeholders left in); resetting one fails, naming the keys to set. A task's
browser may visit its sites' origins only. A config whose ``start_url`` lists several pages
(``a |AND| b``) opens each in its own tab; the agent acts on the last.

**Logins.** Before the start page loads, the episode's context gets the Playwright storage state of
each site the task logs in to: ``env.webarena.storage_states.<site>``, else
``<env.webarena.auth_dir>/<site>_state.json`` (the ``.auth`` folder WebArena's ``auto_login.py``
writes). Cookies are added to the context; local storage is written on the site's first page load.

**Reset hooks.** WebArena's sites keep what an agent changes, so tasks that change state must start
from freshly reset sites. Set ``env.webarena.reset_command`` to a shell command that resets them
(e.g. a script that recreates the containers); it runs before each task that changes state (its eval
reads pages with program_html, or the config says ``require_reset``), or before every task with
``env.webarena.reset_scope=every_task``. It runs one at a time, within
``env.webarena.reset_timeout_s``, with ``WEBRL_TASK_ID``, ``WEBRL_SITES`` (comma-separated) and
``WEBARENA_<SITE>`` (each configured base URL) in its environment; a non-zero exit fails the episode's
start. The pool bounds an episode's start (reset hook included) by ``env.browser.navigation_timeout_s
+ env.browser.action_timeout_s``: raise ``env.browser.navigation_timeout_s`` above the reset's
duration. Run state-changing tasks one at a time (``env.browser.contexts=1``): episodes share the
sites.

**Reward.** When an episode ends, :func:`reward.rules.evaluate` scores it with the config's ``eval``
(WebArena's string_match, url_match and program_html); fuzzy matches go to ``env.webarena.fuzzy_judge``
(default: the deterministic token-overlap judge). Each check's reason is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import os
import signal
from functools import cached_property
from pathlib import Path

from envpool.allowlist import origin_of
from envpool.suites.base import TaskSuite
from reward.judge import load_judge
from reward.rule_config import parse_eval_config
from reward.rules import RuleResult, evaluate
from webrl.config import ConfigError
from webrl.types import Task


DISTRIBUTION = "browsergym-webarenalite"
CONFIG_FILE = "test_webarena_lite.raw.json"
SITES = ("shopping", "shopping_admin", "reddit", "gitlab", "map", "wikipedia", "homepage")
LOGIN_SITES = ("shopping", "shopping_admin", "reddit", "gitlab")
START_URL_SEPARATOR = "|AND|"
# written once per origin into local storage when a login's entries were applied, so that a reload
# does not restore what the site has changed since
LOCAL_STORAGE_MARK = "__webrl_storage_state__"


def placeholder(site: str) -> str:
    """``shopping_admin`` -> ``__SHOPPING_ADMIN__``."""
    return f"__{site.upper()}__"


def configs_path() -> Path:
    """Where ``browsergym-webarenalite`` keeps WebArena-Lite's task configs (the package is not imported)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise RuntimeError(f"the '{DISTRIBUTION}' package is missing: run scripts/setup.sh "
                           f"(or pip install --no-deps {DISTRIBUTION})") from None
    for file in dist.files or []:
        if file.name == CONFIG_FILE:
            return Path(dist.locate_file(file))
    raise RuntimeError(f"{DISTRIBUTION} is installed but holds no {CONFIG_FILE}; reinstall it")


def substitute(value, urls: dict[str, str]):
    """``value`` (a config, or any part of one) with each configured site's placeholder replaced."""
    if isinstance(value, str):
        for site, url in urls.items():
            value = value.replace(placeholder(site), url)
        return value
    if isinstance(value, list):
        return [substitute(v, urls) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, urls) for k, v in value.items()}
    return value


def sites_of(raw: dict) -> list[str]:
    """The sites a config needs: its ``sites`` and any whose placeholder it mentions."""
    text = json.dumps(raw)
    return list(dict.fromkeys([*raw["sites"], *(s for s in SITES if placeholder(s) in text)]))


def changes_state(raw: dict) -> bool:
    """Whether a task may change its sites' state: it says so, or its eval reads pages afterwards."""
    return bool(raw.get("require_reset")) or "program_html" in raw["eval"]["eval_types"]


def check_config(raw: dict, source: str) -> None:
    """Refuse a task config that lacks a field, names an unknown site or has a malformed eval."""
    name = f"task webarena/{raw.get('task_id', '?')} in {source}"
    missing = [k for k in ("task_id", "sites", "intent", "start_url", "eval") if k not in raw]
    if missing:
        raise ValueError(f"{name} lacks {', '.join(missing)}")
    unknown = [s for s in raw["sites"] if s not in SITES]
    if unknown:
        raise ValueError(f"{name}: unknown site {', '.join(map(repr, unknown))}; known: {', '.join(SITES)}")
    parse_eval_config(raw["eval"], f"webarena/{raw['task_id']}")


# Writes a login's local-storage entries the first time a page of their origin loads.
_LOCAL_STORAGE_JS = """((byOrigin, mark) => {
  try {
    const entries = byOrigin[location.origin];
    if (!entries || localStorage.getItem(mark)) return;
    for (const [name, value] of entries) localStorage.setItem(name, value);
    localStorage.setItem(mark, "1");
  } catch (e) {}
})"""


class WebArenaSuite(TaskSuite):
    name = "webarena"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.wa = cfg.webarena
        self._reset_lock: asyncio.Lock | None = None

    # ---- configs and tasks ----------------------------------------------------------------------
    @cached_property
    def raw_configs(self) -> dict[str, dict]:
        """Every task config as shipped, by task id (``webarena/<n>``), validated."""
        path = configs_path()
        configs = json.loads(path.read_text())
        for raw in configs:
            check_config(raw, str(path))
        return {f"webarena/{raw['task_id']}": raw for raw in configs}

    @property
    def urls(self) -> dict[str, str]:
        """Configured site base URLs, by site."""
        return {site: url for site, url in self.wa.urls.model_dump().items() if url}

    def config(self, task_id: str) -> dict:
        """A task's config with the configured base URLs in place of their placeholders."""
        return substitute(self.raw_configs[task_id], self.urls)

    def _task(self, task_id: str) -> Task:
        raw, urls = self.raw_configs[task_id], self.urls
        cfg = substitute(raw, urls)
        start_urls = [u.strip() for u in cfg["start_url"].split(START_URL_SEPARATOR)]
        origins = [urls[s] for s in sites_of(raw) if s in urls]
        origins += [u for u in start_urls if u.startswith(("http://", "https://"))]
        return Task(id=task_id, suite=self.name, instruction=raw["intent"], start_url=start_urls[0],
                    evaluator=cfg["eval"], allowed_origins=sorted({origin_of(u) for u in origins}))

    def tasks(self) -> list[Task]:
        return [self._task(task_id) for task_id in self.raw_configs]

    splits = ("test", "configured", *SITES)

    def split(self, name: str) -> list[Task]:
        """``test``: all 165 tasks (WebArena-Lite is a test set); ``configured``: those whose sites all
        have URLs; a site's name: the tasks that use that site."""
        if name == "test":
            return self.tasks()
        if name == "configured":
            return [self._task(t) for t, raw in self.raw_configs.items() if not self._missing_urls(raw)]
        if name in SITES:
            return [self._task(t) for t, raw in self.raw_configs.items() if name in sites_of(raw)]
        return super().split(name)

    def _missing_urls(self, raw: dict) -> list[str]:
        return [s for s in sites_of(raw) if s not in self.urls]

    def login_file(self, site: str) -> Path | None:
        """The storage-state file that logs in to ``site``, if one is configured."""
        path = getattr(self.wa.storage_states, site, None)
        if path:
            return Path(path).expanduser()
        if self.wa.auth_dir:
            return Path(self.wa.auth_dir).expanduser() / f"{site}_state.json"
        return None

    def _login_sites(self, raw: dict) -> list[str]:
        """Sites the task starts logged in to (WebArena gives map and wikipedia tasks no login)."""
        return [s for s in raw["sites"] if s in LOGIN_SITES] if raw.get("storage_state") else []

    def task(self, task_id: str) -> Task:
        """The task, ready to run; raises :class:`ConfigError` naming the keys to set when its sites'
        URLs or logins are not configured."""
        if task_id not in self.raw_configs:
            raise KeyError(task_id)
        raw = self.raw_configs[task_id]
        missing = self._missing_urls(raw)
        if missing:
            keys = ", ".join(f"env.webarena.urls.{s}" for s in missing)
            raise ConfigError(f"{task_id} runs on {', '.join(missing)}, whose base URL is not configured: set {keys} "
                              f"(e.g. --set env.webarena.urls.{missing[0]}=http://<host>:<port>)")
        for site in self._login_sites(raw):
            path = self.login_file(site)
            if path is None or not path.is_file():
                where = f"{path} does not exist" if path else "no login is configured"
                raise ConfigError(f"{task_id} starts logged in to {site}, but {where}: set "
                                  f"env.webarena.storage_states.{site} to a Playwright storage-state file, or "
                                  "env.webarena.auth_dir to the folder WebArena's auto_login.py wrote")
        return self._task(task_id)

    # ---- episodes ------------------------------------------------------------------------------
    async def prepare(self, context, task: Task, episode_id: str) -> None:
        """Reset the sites if the task needs it, then log the context in to the task's sites."""
        raw = self.raw_configs[task.id]
        if self.wa.reset_command and (self.wa.reset_scope == "every_task" or changes_state(raw)):
            await self.run_reset(task.id, sites_of(raw))
        cookies, storage = [], {}
        for site in self._login_sites(raw):
            state = json.loads(self.login_file(site).read_text())
            cookies += state.get("cookies", [])
            for entry in state.get("origins", []):
                storage.setdefault(entry["origin"], []).extend(
                    [item["name"], item["value"]] for item in entry.get("localStorage", []))
        if cookies:
            await context.add_cookies(cookies)
        if storage:
            await context.add_init_script(f"{_LOCAL_STORAGE_JS}({json.dumps(storage)}, {json.dumps(LOCAL_STORAGE_MARK)})")
        if raw.get("geolocation"):
            await context.set_geolocation(raw["geolocation"])

    async def run_reset(self, task_id: str, sites: list[str]) -> None:
        """Run ``env.webarena.reset_command`` (one at a time, in a process group of its own, killed whole
        past its time limit); raises RuntimeError if it fails."""
        if self._reset_lock is None:
            self._reset_lock = asyncio.Lock()
        env = {**os.environ, "WEBRL_TASK_ID": task_id, "WEBRL_SITES": ",".join(sites),
               **{f"WEBARENA_{site.upper()}": url for site, url in self.urls.items()}}
        async with self._reset_lock:
            proc = await asyncio.create_subprocess_shell(self.wa.reset_command, env=env, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), self.wa.reset_timeout_s)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the shell and whatever it started
                await proc.wait()
                raise RuntimeError(f"the reset command for {task_id} ran past env.webarena.reset_timeout_s "
                                   f"({self.wa.reset_timeout_s:.0f} s) and was killed") from None
        if proc.returncode != 0:
            tail = out.decode(errors="replace").strip()[-500:]
            raise RuntimeError(f"the reset command for {task_id} failed (exit {proc.returncode}): {tail}")

    async def begin(self, page, task: Task, seed: int | None) -> str:
        """Open the task's further start pages (``a |AND| b``), each in a tab of its own."""
        start_urls = [u.strip() for u in self.config(task.id)["start_url"].split(START_URL_SEPARATOR)]
        for url in start_urls[1:]:
            tab = await page.context.new_page()
            await tab.goto(url, wait_until="load", timeout=self.cfg.browser.navigation_timeout_s * 1000)
        return task.instruction or ""

    @cached_property
    def fuzzy_judge(self):
        return load_judge(self.wa.fuzzy_judge)

    async def judge(self, page, task: Task, episode_id: str, answer: str | None) -> RuleResult:
        """The episode's reward from the task's WebArena evaluators, with each check's reason."""
        return await evaluate(task.evaluator, answer=answer, page=page, judge=self.fuzzy_judge,
                              intent=task.instruction or "", task_id=task.id, sites=self.urls,
                              timeout_s=self.wa.page_timeout_s, settle_s=self.wa.settle_s)
