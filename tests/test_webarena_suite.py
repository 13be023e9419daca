"""The webarena suite: WebArena-Lite's 165 configs, URL placeholders, allowed origins, logins, reset
hooks and errors; a few tasks' evaluators on recorded answers and recorded pages (right and wrong),
and one task end to end through the BrowserPool."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from envpool.chromium import find_executable
from envpool.static_server import StaticServer
from envpool.suites import Suites, UnknownTask
from envpool.suites.webarena import SITES, WebArenaSuite, changes_state, check_config, configs_path
from webrl.config import ConfigError, load_config

PAGES = Path(__file__).parent / "data" / "webarena" / "sites"
FAKE_URLS = {"shopping": "http://shop.test:7770/", "shopping_admin": "http://shop.test:7780/admin",
             "reddit": "http://forum.test:9999", "gitlab": "http://git.test:8023", "map": "http://map.test:3000",
             "wikipedia": "http://wiki.test:8888/wikipedia_en", "homepage": "http://home.test:4399"}


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def auth_dir(tmp_path):
    """A folder of (empty) logins for every site, as WebArena's auto_login.py lays them out."""
    for site in ("shopping", "shopping_admin", "reddit", "gitlab"):
        (tmp_path / f"{site}_state.json").write_text('{"cookies": [], "origins": []}')
    return str(tmp_path)


def suite_with(**webarena) -> WebArenaSuite:
    overrides = []
    for key, value in webarena.items():
        if isinstance(value, dict):
            overrides += [f"env.webarena.{key}.{k}={v}" for k, v in value.items()]
        else:
            overrides.append(f"env.webarena.{key}={value}")
    return WebArenaSuite(load_config("tiny", overrides).env)


# ---- the configs ----------------------------------------------------------------------------------
def test_lists_all_165_tasks_without_importing_the_package():
    tasks = Suites(load_config("tiny").env).by_name["webarena"].tasks()
    assert [t.id for t in tasks] == [f"webarena/{n}" for n in range(165)]
    assert all(t.instruction and t.evaluator and t.suite == "webarena" for t in tasks)
    types = Counter(kind for t in tasks for kind in t.evaluator["eval_types"])
    assert types == {"string_match": 80, "program_html": 67, "url_match": 39}
    assert configs_path().name == "test_webarena_lite.raw.json"
    assert "browsergym.webarenalite" not in sys.modules


def test_splits():
    suite = suite_with(urls={"gitlab": FAKE_URLS["gitlab"]})
    assert len(suite.split("test")) == 165
    gitlab_only = [t.id for t in suite.split("configured")]
    assert len(gitlab_only) == 30 and "webarena/112" in gitlab_only  # tasks needing reddit too are left out
    assert len(suite.split("gitlab")) == 34
    with pytest.raises(KeyError, match="its splits: test, configured, shopping"):
        suite.split("train")


def test_placeholders_map_to_configured_urls(auth_dir):
    suite = suite_with(urls=FAKE_URLS, auth_dir=auth_dir)
    t0 = suite.task("webarena/0")
    assert t0.start_url == "http://shop.test:7780/admin"
    t107 = suite.task("webarena/107")
    assert t107.start_url == "http://shop.test:7780/admin/catalog/product/edit/id/1481/"
    assert t107.evaluator["program_html"][0]["url"] == "http://shop.test:7780/admin/catalog/product/edit/id/1481/"
    # placeholders inside references are mapped too, and the shop's trailing slash is gone
    t127 = suite.task("webarena/127")
    assert t127.evaluator["program_html"][0]["required_contents"]["must_include"][0] == \
        "http://forum.test:9999/f/DIY/118903/separate-glued-plastic-parts"
    assert suite.task("webarena/41").evaluator["reference_url"].startswith("http://shop.test:7770/game-card-holder")
    every = json.dumps([t.model_dump() for t in suite.tasks()])
    assert not any(f"__{site.upper()}__" in every for site in SITES)


def test_allowed_origins_are_the_tasks_sites(auth_dir):
    suite = suite_with(urls=FAKE_URLS, auth_dir=auth_dir)
    assert suite.task("webarena/127").allowed_origins == ["http://forum.test:9999", "http://git.test:8023"]
    assert suite.task("webarena/3").allowed_origins == ["http://map.test:3000"]
    assert suite.task("webarena/155").allowed_origins == ["http://map.test:3000", "http://wiki.test:8888"]
    # three start pages in tabs: the first is the start URL, all on the shop's origin
    multi = suite.task("webarena/103")
    assert multi.start_url.startswith("http://shop.test:7770/tall-pink-taper-candles")
    assert multi.allowed_origins == ["http://shop.test:7770"]


def test_without_urls_listing_works_and_a_reset_says_what_to_set(cfg):
    suites = Suites(cfg.env)
    assert suites.by_name["webarena"].tasks()[127].start_url == "__GITLAB__"
    with pytest.raises(ConfigError, match=r"webarena/127 runs on gitlab, reddit.*set env.webarena.urls.gitlab, "
                                          r"env.webarena.urls.reddit"):
        suites.resolve("webarena/127")
    with pytest.raises(UnknownTask, match="no task 'webarena/1650'; did you mean"):
        suites.resolve("webarena/1650")


def test_missing_login_says_what_to_set(tmp_path):
    suite = suite_with(urls=FAKE_URLS)
    with pytest.raises(ConfigError, match="starts logged in to shopping, but no login is configured: set "
                                          "env.webarena.storage_states.shopping"):
        suite.task("webarena/94")
    suite = suite_with(urls=FAKE_URLS, auth_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=f"{tmp_path}/shopping_state.json does not exist"):
        suite.task("webarena/94")
    (tmp_path / "shopping_state.json").write_text('{"cookies": []}')
    assert suite.task("webarena/94").id == "webarena/94"
    assert suite.task("webarena/3").id == "webarena/3"  # map tasks need no login


def test_broken_configs_are_refused_naming_the_task():
    good = json.loads(configs_path().read_text())[0]
    with pytest.raises(ValueError, match=r"task webarena/0 in f.json: unknown site 'bank'"):
        check_config({**good, "sites": ["shopping", "bank"]}, "f.json")
    with pytest.raises(ValueError, match="task webarena/0 in f.json lacks intent"):
        check_config({k: v for k, v in good.items() if k != "intent"}, "f.json")
    with pytest.raises(ValueError, match="task webarena/0: invalid eval config: unknown eval type 'llm_judge'"):
        check_config({**good, "eval": {**good["eval"], "eval_types": ["llm_judge"]}}, "f.json")


def test_no_config_reads_last_after_opening_another_page():
    """Our program_html opens URL targets in new pages, so ``last`` stays the agent's page; WebArena
    navigates the agent's page instead. The two agree as long as no config lists ``last`` after a URL."""
    for raw in WebArenaSuite(load_config("tiny").env).raw_configs.values():
        urls = [t["url"] for t in raw["eval"]["program_html"]]
        assert "last" not in urls[next((i for i, u in enumerate(urls) if u != "last"), len(urls)):], raw["task_id"]


def test_state_changing_tasks():
    raws = WebArenaSuite(load_config("tiny").env).raw_configs
    assert sum(changes_state(raw) for raw in raws.values()) == 67
    assert changes_state(raws["webarena/112"]) and not changes_state(raws["webarena/0"])


# ---- the reset hook -------------------------------------------------------------------------------
def test_reset_command_gets_the_task_and_its_sites(tmp_path):
    log = tmp_path / "resets.log"
    suite = suite_with(urls=FAKE_URLS, reset_command=f"'echo $WEBRL_TASK_ID $WEBRL_SITES $WEBARENA_GITLAB >> {log}'")
    run(suite.run_reset("webarena/127", ["gitlab", "reddit"]))
    assert log.read_text() == "webarena/127 gitlab,reddit http://git.test:8023\n"
    failing = suite_with(reset_command="'echo containers not up; exit 3'")
    with pytest.raises(RuntimeError, match=r"reset command for webarena/1 failed \(exit 3\): containers not up"):
        run(failing.run_reset("webarena/1", []))
    slow = suite_with(reset_command="'sleep 5'", reset_timeout_s=0.2)
    with pytest.raises(RuntimeError, match="ran past env.webarena.reset_timeout_s"):
        run(slow.run_reset("webarena/1", []))


# ---- WebArena-Lite tasks judged on recorded answers and pages --------------------------------------
@pytest.fixture
def hosted(tmp_path):
    """The recorded sites, each on its own 127.0.0.1 port, and a login for the shop; yields the URLs,
    the login file and the reset log."""
    root = tmp_path / "sites"
    shutil.copytree(PAGES, root)
    servers = {folder.name: StaticServer(folder) for folder in root.iterdir()}
    urls = {name: server.url.rstrip("/") for name, server in servers.items()}
    login = tmp_path / "shopping_state.json"
    login.write_text(json.dumps({
        "cookies": [{"name": "PHPSESSID", "value": "emma", "domain": "127.0.0.1", "path": "/", "expires": -1,
                     "httpOnly": False, "secure": False, "sameSite": "Lax"}],
        "origins": [{"origin": urls["shopping"], "localStorage": [{"name": "mage-cache-storage", "value": "2 items"}]}],
    }))
    yield urls, login, tmp_path / "resets.log"
    with ThreadPoolExecutor() as closing:  # each close waits out its server's poll interval
        list(closing.map(StaticServer.close, servers.values()))


RECORDED = [  # (task, answer, final page under the site, reward)
    (0, "Impulse Duffle; Overnight Duffle; Hawkeye Yoga Short-32-Blue", None, 1.0),
    (0, "Impulse Duffle; Overnight Duffle", None, 0.0),
    (2, "2", None, 1.0),
    (2, "12", None, 0.0),                             # one-character reference: whole words only
    (94, "It is rated 3 out of 5", None, 1.0),        # '65 |OR| 3'
    (94, "It is rated 4", None, 0.0),
    (27, "N/A", None, 1.0),
    (27, "Chloe", None, 0.0),
    (114, "N/A", None, 1.0),
    (114, "N/A: the system says we cannot add order history", None, 1.0),  # the reason, by the default judge
    (114, "Done, notified her", None, 0.0),
    (104, None, ("shopping", "/"), 1.0),             # the newest order holds the kit's SKU
    (117, None, ("shopping", "/"), 0.0),             # it does not hold this one's
    (107, None, ("shopping_admin", "/catalog/product/edit/id/1481/"), 1.0),
    (112, None, ("gitlab", "/"), 1.0),               # vinta is a guest of dotfiles
    (133, None, ("reddit", "/f/nyc/130001/is-car-necessary-in-nyc/"), 1.0),
    (133, None, ("reddit", "/f/nyc/"), 0.0),         # the right forum, but no post
    (155, None, ("map", "/directions/"), 1.0),
    (155, None, ("map", "/"), 0.0),
]


@pytest.mark.browser
def test_webarena_lite_tasks_on_recorded_answers_and_pages(hosted):
    urls, _, _ = hosted
    suite = suite_with(urls=urls, settle_s=0)

    async def judge_all():
        from playwright.async_api import async_playwright

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=find_executable(suite.cfg.browser), args=["--no-sandbox"])
            context = await browser.new_context()
            rewards = []
            for task_no, answer, final, _ in RECORDED:
                task = suite._task(f"webarena/{task_no}")
                if final is None:  # string_match reads the answer only
                    rewards.append((await suite.judge(None, task, "e1", answer)).reward)
                    continue
                page = await context.new_page()
                await page.goto(urls[final[0]] + final[1])
                rewards.append((await suite.judge(page, task, "e1", answer)).reward)
                await page.close()
            await browser.close()
            return rewards

    assert run(judge_all()) == [reward for *_, reward in RECORDED]


@pytest.mark.browser
def test_a_task_end_to_end_through_the_pool(hosted):
    """Reset logs the context in (cookie and local storage from the storage state) after the reset
    hook ran; exiting judges the end state with the task's program_html."""
    from envpool.pool import BrowserPool

    urls, login, resets = hosted
    cfg = load_config("tiny", [f"env.webarena.urls.{site}={url}" for site, url in urls.items()] + [
        f"env.webarena.storage_states.shopping={login}", "env.webarena.settle_s=0",
        f"env.webarena.reset_command='echo $WEBRL_TASK_ID >> {resets}'"])

    async def episode():
        async with BrowserPool(cfg.env) as pool:
            rec = await pool.reset("webarena/104")
            step = await pool.step(rec.episode_id, 'exit(message="I re-ordered it")')
            return rec, step, await pool.close(rec.episode_id)

    rec, step, final = run(episode())
    assert rec.status.value == "running", rec.reason
    assert rec.instruction.startswith("I previously ordered some a make up removal kit")
    assert "signed in as emma, cart 2 items" in rec.first_observation.html
    assert resets.read_text() == "webarena/104\n"
    assert step.reward == 1.0 and final.reward == 1.0 and final.reward_source.value == "rule"
    assert final.reward_checks and all("program_html" in line for line in final.reward_checks)  # why, in words
    assert final.answer == "I re-ordered it"
