"""Benchmark: our BrowserPool (a Ray actor) against a bare Playwright loop doing the same page work.

Both run the same episodes: a fresh context, MiniWoB's click-checkboxes page at a seed, then K steps
that each click a checkbox, observe the page with the same in-page script and read the reward. The
bare loop runs in this process with no allowlist, no parsing, no records, no Ray. Reported at 1, 4
and 16 concurrent episodes, interleaved over several runs whose medians count, to tame noise; ``*_ratio`` keys are ours/bare
for throughput (higher is better) and bare/ours for latency (higher is better, 1 = no overhead).

    python bench/envpool.py --json        # one JSON line
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from playwright.async_api import async_playwright  # noqa: E402

from envpool.chromium import find_executable  # noqa: E402
from envpool.observation import OBSERVE_JS, script_options  # noqa: E402
from envpool.pool import remote_pool  # noqa: E402
from envpool.suites.miniwob import MiniWoBSuite  # noqa: E402
from webrl.cluster import init_ray  # noqa: E402
from webrl.config import load_config  # noqa: E402

TASK = "miniwob/click-checkboxes"


def _action(step: int) -> tuple[int, str]:
    element = step % 2
    return element, f'do(action="Click", element="{element}")'


async def bare_episodes(cfg, concurrency: int, episodes: int, steps: int) -> tuple[float, list[float]]:
    """The baseline: raw Playwright, same browser flags, same pages, same observation script."""
    suite = MiniWoBSuite(cfg.env)
    task = suite.task(TASK)
    opts = script_options(cfg.env.observation)
    b = cfg.env.browser
    latencies: list[float] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_executable(b), headless=True, args=b.launch_args)
        sem = asyncio.Semaphore(concurrency)

        async def episode(seed: int):
            async with sem:
                ctx = await browser.new_context(viewport={"width": b.viewport_width, "height": b.viewport_height})
                page = await ctx.new_page()
                await page.goto(task.start_url, wait_until="load")
                await suite.begin(page, task, seed)
                await page.evaluate(OBSERVE_JS, opts)
                for i in range(steps):
                    t0 = time.perf_counter()
                    element, _ = _action(i)
                    await page.locator(f'[data-webrl-id="{element}"]').first.click()
                    await page.wait_for_load_state("domcontentloaded")
                    await suite.reward(page, task)
                    await page.evaluate(OBSERVE_JS, opts)  # same page work as ours, in separate calls
                    latencies.append(time.perf_counter() - t0)
                await ctx.close()

        t0 = time.perf_counter()
        await asyncio.gather(*(episode(s) for s in range(episodes)))
        wall = time.perf_counter() - t0
        await browser.close()
    suite.close()
    return episodes * steps / wall, latencies


async def pool_episodes(pool, concurrency: int, episodes: int, steps: int) -> tuple[float, list[float]]:
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def episode(seed: int):
        async with sem:
            rec = await pool.reset.remote(TASK, seed)
            for i in range(steps):
                t0 = time.perf_counter()
                step = await pool.step.remote(rec.episode_id, _action(i)[1])
                latencies.append(time.perf_counter() - t0)
                assert step.observation.error is None, step.observation.error
            await pool.close.remote(rec.episode_id)

    t0 = time.perf_counter()
    await asyncio.gather(*(episode(s) for s in range(episodes)))
    return episodes * steps / (time.perf_counter() - t0), latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line only")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--steps", type=int, default=5, help="steps per episode")
    ap.add_argument("--episodes-per-slot", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs of each side; medians count")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    # generous action timeout: 16 episodes on 2 cores make single clicks slow, and this measures speed
    cfg = load_config("local", [f"env.browser.contexts={max(levels)}", "env.browser.action_timeout_s=60"])
    ray = init_ray(cfg.ray)
    pool = remote_pool(cfg.env, num_cpus=0)
    ray.get(pool.start.remote())
    asyncio.run(pool_episodes(pool, 2, 2, 2))  # warm-up: the actor's first call and the page cache
    out: dict[str, float] = {}
    for c in levels:
        episodes = max(4, c * args.episodes_per_slot)
        ours, bare = [], []
        for r in range(args.repeats):  # interleaved, alternating who goes first: drift hits both sides
            pair = [lambda: bare.append(asyncio.run(bare_episodes(cfg, c, episodes, args.steps))),
                    lambda: ours.append(asyncio.run(pool_episodes(pool, c, episodes, args.steps)))]
            for run in pair if r % 2 == 0 else pair[::-1]:
                run()
        rate, bare_rate = statistics.median(o[0] for o in ours), statistics.median(b[0] for b in bare)
        out[f"steps_per_s_c{c}"] = round(rate, 2)
        out[f"bare_steps_per_s_c{c}"] = round(bare_rate, 2)
        out[f"throughput_c{c}_ratio"] = round(rate / bare_rate, 3)
        lat = statistics.median(x for o in ours for x in o[1]) * 1000
        bare_lat = statistics.median(x for b in bare for x in b[1]) * 1000
        out[f"step_ms_c{c}"] = round(lat, 1)
        out[f"bare_step_ms_c{c}"] = round(bare_lat, 1)
        out[f"latency_c{c}_ratio"] = round(bare_lat / lat, 3)
        if not args.json:
            print(f"c={c}: ours {rate:.1f} steps/s ({lat:.0f} ms/step), bare {bare_rate:.1f} steps/s "
                  f"({bare_lat:.0f} ms/step)", file=sys.stderr)
    out["min_throughput_ratio"] = min(out[f"throughput_c{c}_ratio"] for c in levels)
    health = ray.get(pool.health.remote())
    out["pool_restarts"] = health["restarts"]
    ray.get(pool.shutdown.remote())
    print(json.dumps({"benchmark": "envpool", **out}))


if __name__ == "__main__":
    main()
