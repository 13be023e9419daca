"""BrowserPool with a real Chromium: episodes, ids, allowlist, dialogs, hangs, crashes."""

from __future__ import annotations

import asyncio
import time

import pytest

from envpool.observation import elements
from envpool.pool import BrowserPool, PoolBusy
from envpool.suites.miniwob_scripts import scripted_action
from tests.conftest import run
from webrl.types import EpisodeStatus

pytestmark = pytest.mark.browser


def _id(html: str, text: str) -> int:
    return next(e.id for e in elements(html) if e.text == text)


async def _solve(pool: BrowserPool, task_id: str, seed: int):
    rec = await pool.reset(task_id, seed)
    obs, history = rec.first_observation, []
    for _ in range(8):
        history.append(scripted_action(task_id, rec.instruction, obs.html, history))
        step = await pool.step(rec.episode_id, history[-1])
        assert step.observation.error is None, step.observation.error
        obs = step.observation
        if step.done:
            break
    return await pool.close(rec.episode_id)


# Every scripted policy reaching reward 1 is tested in tests/test_miniwob_scripts.py.


def test_seeds_reproduce_pages_and_ids_are_stable(cfg):
    async def main():
        async with BrowserPool(cfg.env) as pool:
            a = await pool.reset("miniwob/click-checkboxes", 3)
            b = await pool.reset("miniwob/click-checkboxes", 3)
            # observing an unchanged page again (a no-op action) gives the same ids in DOM order
            again = await pool.step(a.episode_id, 'do(action="Scroll Down")')
            await pool.close(a.episode_id)
            c = await pool.reset("miniwob/click-checkboxes", 4)
            return a, b, c, again

    a, b, c, again = run(main())
    assert a.instruction == b.instruction and a.first_observation.html == b.first_observation.html
    assert (a.instruction, a.first_observation.html) != (c.instruction, c.first_observation.html)
    assert again.observation.html == a.first_observation.html
    ids = [e.id for e in elements(a.first_observation.html)]
    assert ids == list(range(len(ids))) and len(ids) == a.first_observation.element_count > 2
    assert 'data-bbox="' in a.first_observation.html


def test_action_errors_are_reported_to_the_agent_and_the_episode_goes_on(cfg, sites):
    site, _ = sites

    async def main():
        async with BrowserPool(cfg.env) as pool:
            rec = await pool.reset(f"{site.url}/start")
            html = rec.first_observation.html
            select = next(e.id for e in elements(html) if e.tag == "select")
            out = {}
            out["missing"] = await pool.step(rec.episode_id, 'do(action="Click", element="999")')
            out["bad_option"] = await pool.step(rec.episode_id, f'do(action="Select Dropdown Option", argument="Gamma", element="{select}")')
            out["not_select"] = await pool.step(rec.episode_id, f'do(action="Select Dropdown Option", argument="x", element="{_id(html, "second page")}")')
            out["invalid"] = await pool.step(rec.episode_id, "I think I should click the button")
            out["select"] = await pool.step(rec.episode_id, f'do(action="Select Dropdown Option", argument="beta two", element="{select}")')
            out["exit"] = await pool.step(rec.episode_id, 'exit(message="all done")')
            out["after"] = await pool.step(rec.episode_id, 'do(action="Scroll Up")')
            return out, await pool.close(rec.episode_id)

    out, record = run(main())
    assert "element 999 is not on the page" in out["missing"].observation.error
    assert "no option 'Gamma'" in out["bad_option"].observation.error and "Beta Two" in out["bad_option"].observation.error
    assert "not a <select>" in out["not_select"].observation.error
    assert out["invalid"].observation.error.startswith("invalid action:") and out["invalid"].status is EpisodeStatus.running
    assert out["select"].observation.error is None
    assert '<option selected="true">Beta Two</option>' in out["select"].observation.html
    assert out["exit"].status is EpisodeStatus.done and record.answer == "all done"
    assert record.reward_source.value == "none"  # a URL has no reward of its own: nothing judged it yet
    assert out["after"].status is EpisodeStatus.done and "episode has ended" in out["after"].observation.error
    assert len(record.steps) == 6  # a step sent after the end is answered, not recorded


def test_allowlist_blocks_every_way_off_site(cfg, sites):
    site, offsite = sites

    async def main():
        async with BrowserPool(cfg.env) as pool:
            res = {}
            rec = await pool.reset(f"{site.url}/start")
            html = rec.first_observation.html
            res["link"] = await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "offsite link")}")')
            await pool.step(rec.episode_id, 'do(action="Go Backward")')
            # a popup opens asynchronously: what it did is reported in this step's notes or the next one's
            clicked = await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "offsite popup")}")')
            await asyncio.sleep(0.5)
            res["popup_notes"] = clicked.observation.notes + (await pool.step(rec.episode_id, 'do(action="Scroll Up")')).observation.notes
            res["post"] = await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "post offsite")}")')
            await pool.step(rec.episode_id, 'do(action="Go Backward")')
            res["download"] = await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "download")}")')
            await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "local popup")}")')
            await asyncio.sleep(0.5)  # a popup opens asynchronously; it is the active tab from the next step on
            res["local_popup"] = await pool.step(rec.episode_id, 'do(action="Scroll Up")')
            await pool.close(rec.episode_id)
            for name in ("redirect-off", "redirect-chain", "redirect-ok", "iframe"):
                r = await pool.reset(f"{site.url}/{name}")
                res[name] = r.first_observation
                await pool.close(r.episode_id)
            return res

    res = run(main())
    assert any("blocked navigation" in n for n in res["link"].observation.notes)
    assert "Blocked" in res["link"].observation.html
    assert any("blocked navigation" in n and "/popup" in n for n in res["popup_notes"])
    assert any("closed a new tab" in n for n in res["popup_notes"])
    assert any("blocked navigation" in n and "/steal" in n for n in res["post"].observation.notes)
    assert any("download" in n and "blocked" in n for n in res["download"].observation.notes)
    assert res["download"].observation.url.endswith("/start")  # a blocked download leaves the page as it was
    assert "Second" in res["local_popup"].observation.html  # a same-origin popup becomes the active tab
    assert any("acting on the newest tab" in n for n in res["local_popup"].observation.notes)
    for name in ("redirect-off", "redirect-chain"):
        assert any("blocked redirect" in n for n in res[name].notes), res[name]
        assert "Blocked" in res[name].html
    assert res["redirect-ok"].url.endswith("/second") and "you made it" in res["redirect-ok"].html
    assert any("blocked" in n and "/frame" in n for n in res["iframe"].notes)
    assert "you made it" in res["iframe"].html  # the same-origin frame loads and is observed
    assert offsite.requests == []  # nothing ever reached the other origin


def test_file_page_may_reach_only_its_own_folder(cfg, tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("top secret")
    (folder / "next.html").write_text("<p>sibling page</p>")
    (folder / "index.html").write_text(
        '<a href="next.html">sibling</a> <a href="../secret.txt">parent</a> <a href="file:///etc/hostname">system</a>'
    )

    async def main():
        async with BrowserPool(cfg.env) as pool:
            rec = await pool.reset(f"file://{folder}/index.html")
            html = rec.first_observation.html
            out = []
            for text in ("sibling", "parent", "system"):
                out.append(await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, text)}")'))
                await pool.step(rec.episode_id, 'do(action="Go Backward")')
            return rec, out

    rec, (sibling, parent, system) = run(main())
    assert rec.first_observation.url.startswith("http://127.0.0.1:")
    assert "sibling page" in sibling.observation.html
    assert "top secret" not in parent.observation.html
    assert "index.html" in system.observation.url or "system" in system.observation.html  # file:// never opens


def test_dialogs_never_block(cfg, sites):
    site, _ = sites

    async def main():
        async with BrowserPool(cfg.env) as pool:
            rec = await pool.reset(f"{site.url}/start")
            html = rec.first_observation.html
            a = await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "alert")}")')
            c = await pool.step(rec.episode_id, f'do(action="Click", element="{_id(html, "confirm")}")')
            return a, c

    alert, confirm = run(main())
    assert alert.observation.error is None and alert.elapsed_s < cfg.env.browser.action_timeout_s
    assert any("alert dialog said 'hello'" in n for n in alert.observation.notes)
    assert any("confirm dialog" in n for n in confirm.observation.notes)


def test_infinite_js_loop_ends_its_episode_while_others_go_on(cfg, sites):
    site, _ = sites
    cfg.env.browser.action_timeout_s = 3

    async def main():
        async with BrowserPool(cfg.env) as pool:
            stuck = await pool.reset(f"{site.url}/loop")
            other = await pool.reset("miniwob/click-test", 1)
            freeze = _id(stuck.first_observation.html, "freeze")

            async def keep_working():
                steps = []
                for _ in range(3):
                    steps.append(await pool.step(other.episode_id, 'do(action="Scroll Down")'))
                return steps

            t0 = time.perf_counter()
            frozen, others = await asyncio.gather(
                pool.step(stuck.episode_id, f'do(action="Click", element="{freeze}")'), keep_working())
            elapsed = time.perf_counter() - t0
            after = await _solve(pool, "miniwob/click-button", 2)
            return frozen, others, elapsed, after, await pool.health()

    frozen, others, elapsed, after, health = run(main())
    assert frozen.status is EpisodeStatus.timeout
    assert "did not finish within 3 s" in frozen.observation.error
    assert elapsed < 3 + 5
    assert all(s.status is EpisodeStatus.running and s.observation.error is None for s in others)
    assert after.reward == 1.0 and health["timeouts"] == 1 and health["alive"]


def test_huge_page_comes_back_truncated_within_the_step_timeout(cfg, sites):
    site, _ = sites

    async def main():
        async with BrowserPool(cfg.env) as pool:
            t0 = time.perf_counter()
            rec = await pool.reset(f"{site.url}/huge")
            return rec, time.perf_counter() - t0

    rec, elapsed = run(main())
    obs = rec.first_observation
    assert rec.status is EpisodeStatus.running, rec.reason
    assert obs.truncated and len(obs.html) <= cfg.env.observation.max_chars
    assert any("truncated" in n for n in obs.notes)
    assert elapsed < cfg.env.browser.navigation_timeout_s + cfg.env.browser.action_timeout_s


def test_viewport_only_drops_elements_below_the_fold(cfg, sites):
    site, _ = sites
    cfg.env.observation.viewport_only = True
    cfg.env.observation.max_chars = 10**7
    cfg.env.observation.time_budget_ms = 10**5

    async def main():
        async with BrowserPool(cfg.env) as pool:
            return await pool.reset(f"{site.url}/huge")

    obs = run(main()).first_observation
    assert not obs.truncated and 0 < obs.element_count < 2000


def test_reset_waits_for_a_free_context_then_says_what_to_do(cfg):
    cfg.env.browser.contexts = 1
    cfg.env.browser.episode_timeout_s = 2

    async def main():
        async with BrowserPool(cfg.env) as pool:
            first = await pool.reset("miniwob/click-test", 0)
            waiting = asyncio.ensure_future(pool.reset("miniwob/click-test", 1))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await pool.close(first.episode_id)  # frees the context: the waiting reset proceeds
            second = await waiting
            with pytest.raises(PoolBusy, match="close finished episodes"):
                await pool.reset("miniwob/click-test", 2)
            return second

    assert run(main()).status is EpisodeStatus.running


def test_a_failing_suite_set_up_ends_the_episode_with_its_reason_and_frees_the_context(cfg, monkeypatch):
    """A suite's ``prepare`` (a reset hook, a login) that raises ends that episode as an error saying
    why; the context is free at once for the next episode."""
    from envpool.suites.miniwob import MiniWoBSuite

    cfg.env.browser.contexts = 1
    cfg.env.browser.episode_timeout_s = 5
    calls = []

    async def prepare(self, context, task, episode_id):
        calls.append(episode_id)
        if len(calls) == 1:
            raise RuntimeError("the reset hook exited with status 3")

    monkeypatch.setattr(MiniWoBSuite, "prepare", prepare)

    async def main():
        async with BrowserPool(cfg.env) as pool:
            failed = await pool.reset("miniwob/click-test", 0)
            t0 = time.perf_counter()
            ok = await pool.reset("miniwob/click-test", 1)  # would wait 5 s, then fail, if the slot were held
            return failed, ok, time.perf_counter() - t0

    failed, ok, waited = run(main())
    assert failed.status is EpisodeStatus.error
    assert "could not set up miniwob/click-test" in failed.reason and "status 3" in failed.reason
    assert ok.status is EpisodeStatus.running and waited < 4


def test_episode_time_limit(cfg):
    cfg.env.browser.episode_timeout_s = 3

    async def main():
        async with BrowserPool(cfg.env) as pool:
            rec = await pool.reset("miniwob/click-test", 0)
            await asyncio.sleep(3.2)
            return await pool.step(rec.episode_id, 'do(action="Scroll Down")')

    step = run(main())
    assert step.status is EpisodeStatus.timeout and "ran past its limit" in step.observation.error


def test_browser_crash_interrupts_episodes_and_the_pool_relaunches(cfg):
    async def main():
        async with BrowserPool(cfg.env) as pool:
            a = await pool.reset("miniwob/login-user", 1)
            b = await pool.reset("miniwob/click-test", 1)
            first = await pool.step(a.episode_id, scripted_action("miniwob/login-user", a.instruction, a.first_observation.html))
            assert pool.kill_browser(), "found no Chromium process to kill"
            await asyncio.sleep(0.5)
            after = await pool.step(a.episode_id, 'do(action="Click", element="1")')
            rec_a, rec_b = await pool.close(a.episode_id), await pool.close(b.episode_id)
            again = await _solve(pool, "miniwob/click-test", 2)
            return first, after, rec_a, rec_b, again, await pool.health()

    first, after, rec_a, rec_b, again, health = run(main())
    assert first.status is EpisodeStatus.running
    assert after.status is EpisodeStatus.interrupted and "browser crashed" in after.observation.error
    assert rec_a.status is EpisodeStatus.interrupted and rec_b.status is EpisodeStatus.interrupted
    assert rec_a.steps[0] == first  # the steps made before the crash are kept
    assert again.reward == 1.0
    assert health["restarts"] == 1 and health["interrupted"] == 2 and health["alive"]


def test_health_probe_relaunches_a_dead_browser(cfg):
    async def main():
        async with BrowserPool(cfg.env) as pool:
            await pool.start()
            ok = await pool.probe()
            pool.kill_browser()
            await asyncio.sleep(2.5)  # the health loop (1 s interval in the tiny config) notices
            return ok, await pool.health()

    ok, health = run(main())
    assert ok and health["alive"] and health["restarts"] == 1
