"""The sandbox server as a real process and the sandbox suite through the real BrowserPool (Chromium):
concurrent episodes never see each other's writes, states are made in milliseconds and dropped when
episodes end, the example tasks' oracles reach reward 1, the server dies with its parent, broken seed
data stops it with the file and line, and ``webrl sites serve`` serves until Ctrl-C."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from envpool.pool import BrowserPool
from envpool.sandbox.process import ControlError, SandboxServer, SandboxStartError
from envpool.sandbox.seed_data import DATA_DIR
from envpool.suites.sandbox import SandboxSuite
from tests.conftest import run
from webrl.types import EpisodeStatus

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "data" / "sandbox"  # our example tasks with oracles, whatever the bundled tasks are


@pytest.fixture
def cfg(cfg):
    cfg.env.sandbox.tasks_dir = str(EXAMPLES)
    return cfg
CART = ("SELECT COALESCE(SUM(i.qty), 0) AS qty FROM cart_items i JOIN products p ON p.id = i.product_id "
        "WHERE i.customer_id = 1 AND p.sku = 'SO-1368'")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.browser
def test_concurrent_episodes_never_see_each_others_writes(cfg):
    """Two episodes of the same task at once: one adds to its cart, the other only looks; a third posts
    on the forum. Each sees only its own writes, in its pages and in its database; the rule judge reads
    each episode's own state; states are gone once the episodes close."""
    cfg.env.browser.contexts = 3  # three episodes at once

    async def main():
        async with BrowserPool(cfg.env) as pool:
            suite = pool.suites.by_name["sandbox"]
            task = suite.task("sandbox/shop-cart-add-0")
            a, b = await asyncio.gather(pool.reset(task.id), pool.reset(task.id))
            assert "My Cart (3)" in a.first_observation.html and "My Cart (3)" in b.first_observation.html
            # interleaved: a buys; b searches for the same product, opens it and scrolls
            looks = [task.oracle[0], task.oracle[1], 'do(action="Scroll Down")', 'do(action="Scroll Down")']
            steps_a, steps_b = [], []
            for act_a, act_b in zip(task.oracle[:-1], looks):
                sa, sb = await asyncio.gather(pool.step(a.episode_id, act_a), pool.step(b.episode_id, act_b))
                steps_a.append(sa)
                steps_b.append(sb)
            assert "My Cart (5)" in steps_a[-1].observation.html  # a's own page shows its write ...
            assert "My Cart (3)" in steps_b[-1].observation.html  # ... b's page does not
            assert suite.query(a.episode_id, "shop", CART)[0]["qty"] == 2
            assert suite.query(b.episode_id, "shop", CART)[0]["qty"] == 0
            assert suite.query("browse", "shop", CART)[0]["qty"] == 0  # nor the shared browse state

            forum_task = suite.task("sandbox/forum-submit-post-0")
            c = await pool.reset(forum_task.id)
            for act in forum_task.oracle[:-1]:  # all but the exit, which ends the episode and drops its state
                step = await pool.step(c.episode_id, act)
                assert step.observation.error is None, step.observation.error
            titled = "SELECT COUNT(*) AS n FROM posts WHERE title = 'Looking for a cozy mystery series'"
            assert suite.query(c.episode_id, "forum", titled)[0]["n"] == 1
            assert suite.query(a.episode_id, "forum", titled)[0]["n"] == 0
            assert suite.query(a.episode_id, "shop", CART)[0]["qty"] == 2  # a's state is untouched by c
            await pool.step(c.episode_id, forum_task.oracle[-1])
            final_c = await pool.close(c.episode_id)

            final_a = await pool.step(a.episode_id, task.oracle[-1])  # exit: the judge reads a's state
            rec_a, rec_b = await pool.close(a.episode_id), await pool.close(b.episode_id)
            alive = suite.server.episodes()
            return final_a, rec_a, rec_b, final_c, alive, [a.episode_id, b.episode_id, c.episode_id]

    final_a, rec_a, rec_b, final_c, alive, ids = run(main())
    assert final_a.status is EpisodeStatus.done and rec_a.reward == 1.0 and rec_a.reward_source.value == "rule"
    assert rec_b.reward == 0.0 and rec_b.reward_source.value == "rule"  # b never added anything
    assert final_c.reward == 1.0
    assert not set(ids) & set(alive), alive  # every state was discarded with its episode


@pytest.mark.slow
@pytest.mark.browser
def test_example_oracles_reach_reward_one_in_the_browser(cfg):
    """Every example task's oracle, replayed through the real pool, is judged 1 by the rule evaluators
    (proof the tasks are feasible and their evaluators right). Slow: CI replays two of them in
    test_concurrent_episodes_never_see_each_others_writes."""

    async def main():
        async with BrowserPool(cfg.env) as pool:
            out = []
            for task in pool.suites.by_name["sandbox"].tasks():
                rec = await pool.reset(task.id)
                errors = []
                for act in task.oracle:
                    step = await pool.step(rec.episode_id, act)
                    if step.observation.error:
                        errors.append((act, step.observation.error))
                final = await pool.close(rec.episode_id)
                out.append((task.id, final.reward, final.reward_source.value, errors))
            return out

    results = run(main())
    assert len(results) >= 3
    assert [r for r in results if r[1:] != (1.0, "rule", [])] == []


def test_state_reset_takes_milliseconds_and_the_control_api_is_guarded(cfg):
    server = SandboxServer(cfg.env.sandbox).start()
    try:
        wall = []
        for i in range(15):
            t0 = time.perf_counter()
            server.create(f"r{i}")
            wall.append((time.perf_counter() - t0) * 1000)
        assert statistics.median(wall) < 100, wall  # create, as the suite sees it (HTTP round trip included)
        assert server.query("r0", "shop", "SELECT COUNT(*) AS n FROM orders") == [{"n": cfg.env.sandbox.orders}]
        with pytest.raises(ControlError, match="read-only") as err:
            server.query("r0", "shop", "DELETE FROM orders")
        assert err.value.status == 400
        with pytest.raises(ControlError, match="unknown site 'blog'"):
            server.query("r0", "blog", "SELECT 1")
        intruder = SandboxServer(cfg.env.sandbox)
        intruder.proc, intruder.control_url = server.proc, server.control_url  # same server, another token
        with pytest.raises(ControlError, match="token") as err:
            intruder.create("x")
        assert err.value.status == 401
        for i in range(15):
            assert server.discard(f"r{i}")
        assert server.episodes() == []
        # a site page with a discarded episode's cookie says so instead of serving some other state
        req = urllib.request.Request(server.urls["shop"] + "/", headers={"Cookie": "webrl_episode=r0"})
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(req, timeout=10)
        assert http.value.code == 410
    finally:
        server.close()
    assert server.proc is None


def test_broken_seed_data_stops_the_suite_with_file_and_line(cfg, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(DATA_DIR, folder)
    path = folder / "attributes.tsv"
    lines = path.read_text().splitlines(keepends=True)
    lines[3] = "battery\tBattery Life\n"  # line 4: a field missing
    path.write_text("".join(lines))
    cfg.env.sandbox.data_dir = str(folder)
    suite = SandboxSuite(cfg.env)
    with pytest.raises(SandboxStartError) as err:
        suite.task("sandbox/shop-cart-add-0")
    assert f"{path}, line 4:" in str(err.value) and "expected 3 tab-separated fields" in str(err.value)
    suite.close()


def test_the_server_dies_with_its_parent(tmp_path):
    """The parent is SIGKILLed (no cleanup runs): the server sees its stdin close and exits."""
    script = textwrap.dedent("""
        import sys, time
        from envpool.sandbox.process import SandboxServer
        from webrl.config import SandboxConfig
        server = SandboxServer(SandboxConfig()).start()
        print(server.proc.pid, flush=True)
        time.sleep(600)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.time() + 10
    while _alive(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(child)


def _free_base() -> int:
    """A port N with N..N+3 free (checked just now)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base > 65000:
            continue
        try:
            socks = []
            for i in range(4):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no four free ports in a row")


def test_sites_serve_prints_urls_and_serves_until_ctrl_c():
    base = _free_base()
    proc = subprocess.Popen([sys.executable, "-m", "webrl.cli", "sites", "serve", "--port-base", str(base)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        for site, port in (("shop", base), ("admin", base + 1), ("forum", base + 2)):
            url = f"http://127.0.0.1:{port}/"
            assert f"{site}" in text and url in text, text
            with urllib.request.urlopen(url, timeout=10) as resp:
                assert resp.status == 200 and b"<title>" in resp.read()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    with pytest.raises(OSError):  # nothing listens there any more
        urllib.request.urlopen(f"http://127.0.0.1:{base}/", timeout=2)


@pytest.mark.slow
@pytest.mark.browser
def test_sandbox_bench_prints_one_json_line():
    out = subprocess.run([sys.executable, "bench/sandbox.py", "--json", "--resets", "20", "--pool-resets", "3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout[-2000:]
    result = json.loads(lines[0])
    assert result["benchmark"] == "sandbox"
    for key in ("create", "create_server", "create_load", "raw_backup", "pool_reset"):
        assert 0 < result[f"{key}_ms_median"] <= result[f"{key}_ms_p95"], (key, result)
    assert result["create_ms_median"] < 100 and 0 < result["reset_latency_ratio"] <= 1.5
