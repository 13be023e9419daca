"""Soak: ``--concurrency`` episodes at once (default 64) for ``--minutes`` (default 10) through the real rollout
path (Ray, RolloutFleet, RolloutWorker with the tiny random model on the transformers engine under the action
grammar, so every step is a real browser action; BrowserPool actors; the replay buffer), on MiniWoB++ pages.
The policy is the tiny model: generation is cheap next to the browsers, so the soak loads what it is meant to.

It reports, before (idle, after a warm-up round), every ``--interval-s`` under load, and after (idle, every
episode ended): RSS of the driver, of every Ray worker by actor class, of Chromium and of Playwright's driver
processes, and Ray's own services; process counts (Chromium processes, Ray workers); open browser contexts
and pages per pool. Then growth figures in MiB/min (least-squares slope under load, and idle after vs idle
before) and a verdict ``leak_free`` with its thresholds stated in the output:

- Chromium and Ray worker process counts idle after == idle before; no context or page open after;
- RSS growth of everything but the replay buffer (idle after - idle before, per minute of soak) and its slope
  over the load samples of the second half of the soak both <= ``--max-growth`` MiB/min. The replay buffer
  keeps every trajectory in memory by design (actors/replay_buffer.py), so its growth is reported (also per
  trajectory) and left out of the verdict.

RSS is each process's resident set (shared pages count once per process: sums overstate, growth does not).
Like every bench here, a ratio against a raw baseline measured in the same run: soak env steps/s over bare
Playwright steps/s replaying the soak's own episodes (same tasks, seeds and actions, same concurrency;
bench/rollout.py's bare loop) after the soak (``soak_over_bare_ratio``: the whole pipeline, model included,
against browsing alone), and the soak's throughput in its last load interval over its first
(``throughput_last_over_first``: a leak that slows things shows here).

    python bench/soak.py --json                               # 64 episodes at once for 10 minutes
    python bench/soak.py --json --minutes 0.2 --concurrency 4 # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rollout import bare_browser, tiny_model  # noqa: E402
from webrl.config import load_config  # noqa: E402

TASKS = ["click-button", "click-checkboxes", "click-link", "click-option", "click-tab", "enter-text", "focus-text",
         "choose-list"]
MIB = 2**20


def log(msg: str) -> None:
    print(f"[bench/soak] {msg}", file=sys.stderr, flush=True)


# ---- what the processes hold ----------------------------------------------------------------------------------
def kind_of(cmdline: list[str], name: str) -> str:
    """The bucket a process of ours counts in: ``ray::<Class>`` for Ray workers (``ray::IDLE`` idle ones),
    ``chromium:<type>`` (``chromium:utility:<service>`` for Chromium's utility processes: which service an
    extra one runs says whether it is a leak), ``playwright`` (its node driver) or ``ray_services`` (raylet,
    GCS, dashboard agents, ...)."""
    title = cmdline[0] if cmdline else name
    if title.startswith("ray::"):  # an actor's worker, or Ray's own agents (ray::DashboardAgent, ...)
        kind = title.split(".", 1)[0]
        return "ray_services" if kind.endswith("Agent") else kind
    text = " ".join(cmdline) or name
    if "chrom" in name or "chrom" in (cmdline[0] if cmdline else ""):
        kind = "chromium:" + next((a[7:] for a in cmdline if a.startswith("--type=")), "browser")
        service = next((a.split("=", 1)[1] for a in cmdline if a.startswith("--utility-sub-type=")), None)
        return f"{kind}:{service}" if service else kind
    if "playwright" in text or name == "node":
        return "playwright"
    return "ray_services"


def processes() -> dict[str, dict]:
    """RSS (MiB) and count of this process (``driver``) and of each kind of its descendants."""
    import psutil

    me = psutil.Process()
    out = {"driver": {"count": 1, "rss_mib": me.memory_info().rss / MIB}}
    for p in me.children(recursive=True):
        try:
            kind = kind_of(p.cmdline(), p.name())
            rss = p.memory_info().rss / MIB
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        entry = out.setdefault(kind, {"count": 0, "rss_mib": 0.0})
        entry["count"] += 1
        entry["rss_mib"] += rss
    return {k: {"count": v["count"], "rss_mib": round(v["rss_mib"], 1)} for k, v in sorted(out.items())}


# Services Chromium starts once per browser on a timer of its own, whatever the load: the on-device model
# service, which benchmarks the machine's performance class about 3 minutes after launch (an idle browser started
# it at 181 s here; --disable-features=OptimizationGuideOnDeviceModel stops it, but a second --disable-features
# would replace Playwright's own list). One per browser is not growth; a second one would be.
TIMED_SERVICES = ("chromium:utility:on_device_model.mojom.OnDeviceModelService",)


def chromium_same(before: dict, after: dict, browsers: int) -> bool:
    """No Chromium process left over between two idle samples: the same count of every kind but renderers
    (Chromium may keep one spare per browser warm for the next page) and the timed services (at most one per
    browser, started whenever its timer fires)."""
    def split(s: dict) -> tuple[int, int, int]:
        timed = sum(s["processes"].get(k, {}).get("count", 0) for k in TIMED_SERVICES)
        return s["chromium_processes"] - s["chromium_renderers"] - timed, s["chromium_renderers"], timed

    (rest_b, renderers_b, _), (rest_a, renderers_a, timed_a) = split(before), split(after)
    return rest_a == rest_b and renderers_a <= renderers_b + browsers and timed_a <= browsers


def open_pages(pools) -> list[dict]:
    """Open browser contexts and pages in each pool's Chromium (asked through the actor)."""
    import ray

    def count(self):
        b = self._browser
        contexts = list(b.contexts) if b is not None and b.is_connected() else []
        return {"contexts": len(contexts), "pages": sum(len(c.pages) for c in contexts), "running": self._running()}

    return ray.get([p.__ray_call__.remote(count) for p in pools], timeout=60)


def sample(pools, t0: float, steps: int, episodes: int, phase: str) -> dict:
    procs = processes()
    pages = open_pages(pools)
    return {"phase": phase, "t_min": round((time.monotonic() - t0) / 60, 3), "episodes": episodes, "env_steps": steps,
            "processes": procs,
            "ray_workers": sum(v["count"] for k, v in procs.items() if k.startswith("ray::") and k != "ray::IDLE"),
            "ray_idle_workers": procs.get("ray::IDLE", {}).get("count", 0),
            "chromium_processes": sum(v["count"] for k, v in procs.items() if k.startswith("chromium")),
            "chromium_renderers": procs.get("chromium:renderer", {}).get("count", 0),
            "total_rss_mib": round(sum(v["rss_mib"] for v in procs.values()), 1),
            "contexts": sum(p["contexts"] for p in pages), "pages": sum(p["pages"] for p in pages),
            "running_episodes": sum(p["running"] for p in pages)}


def settled(pools, t0: float, steps: int, episodes: int, phase: str, timeout_s: float = 90) -> dict:
    """An idle sample once the browsers have settled: no context open and the Chromium process count the same
    in two samples 3 s apart (closed contexts' renderers exit in the background), or after ``timeout_s``."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        s = sample(pools, t0, steps, episodes, phase)
        if last is not None and s["contexts"] == 0 and s["chromium_processes"] == last["chromium_processes"]:
            return s
        if time.monotonic() > deadline:
            return s | {"unsettled": True}
        last = s
        time.sleep(3)


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minutes, MiB) points; None with fewer than 2 distinct times."""
    if len({x for x, _ in points}) < 2:
        return None
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def rss_without(s: dict, kinds: tuple[str, ...]) -> float:
    return sum(v["rss_mib"] for k, v in s["processes"].items() if k not in kinds)


def growth(before: dict, after: dict, load: list[dict], minutes: float, excluded: tuple[str, ...]) -> dict:
    """MiB/min per kind (idle after - idle before over the soak's minutes) and the slopes under load."""
    kinds = sorted(set(before["processes"]) | set(after["processes"]))
    idle = {k: round((after["processes"].get(k, {}).get("rss_mib", 0) - before["processes"].get(k, {}).get("rss_mib", 0))
                     / minutes, 2) for k in kinds}
    half = [s for s in load if s["t_min"] >= load[-1]["t_min"] / 2] if load else []
    if not half or half[-1]["t_min"] - half[0]["t_min"] < 1.0:  # under a minute of samples: no slope to speak of
        half = []
    load_slope = slope([(s["t_min"], rss_without(s, excluded)) for s in half])
    return {"idle_mib_per_min": idle,
            "idle_total_mib_per_min": round((rss_without(after, excluded) - rss_without(before, excluded)) / minutes, 2),
            "load_slope_mib_per_min_second_half": None if load_slope is None else round(load_slope, 2),
            "load_slope_mib_per_min_by_kind": {
                k: None if (v := slope([(s["t_min"], s["processes"].get(k, {}).get("rss_mib", 0)) for s in half])) is None
                else round(v, 2) for k in kinds}}


def round_size(args, episodes: int, minutes: float) -> int:
    """Episodes to hand the fleet next: what the rate so far finishes in the minutes left (so that the soak ends
    near its time, a round being uninterruptible), between --concurrency and --round-factor times it."""
    c = args.concurrency
    if not episodes or minutes <= 0:
        return c
    left = episodes / minutes * (args.minutes - minutes)
    return int(min(args.round_factor * c, max(c, left)))


# ---- the soak -------------------------------------------------------------------------------------------------
def soak(args, cfg, model: str, tmp: Path) -> dict:
    import ray

    from actors.fleet import RolloutFleet
    from actors.replay_buffer import remote_buffer
    from envpool.suites import Suites
    from webrl.cluster import init_ray
    from webrl.evaluate import eval_specs

    suites = Suites(cfg.env)
    tasks = suites.select("miniwob", args.tasks.split(",") if args.tasks else TASKS)
    suites.close()
    init_ray(cfg.ray)
    buffer = remote_buffer(tmp / "buffer")
    fleet = RolloutFleet(cfg, buffer, model_path=model)
    rounds = 0

    def specs(n: int) -> list:
        nonlocal rounds
        rounds += 1
        per_task = -(-n // len(tasks))
        return eval_specs(f"soak-r{rounds}", tasks, per_task, seed=rounds * 1000)[:n]

    try:
        fleet.wait_ready()
        ray.get([p.start.remote() for p in fleet.pools])
        t_start = time.monotonic()
        fleet.run(specs(args.concurrency))  # warm-up: every context opened once, first calls, page cache
        log(f"ready and warmed up in {time.monotonic() - t_start:.0f} s: {cfg.rollout.workers} workers x "
            f"{cfg.rollout.episodes_per_worker} episodes, {cfg.rollout.browser_pools} pools x "
            f"{cfg.env.browser.contexts} contexts")
        before = settled(fleet.pools, time.monotonic(), 0, 0, "before")
        t0 = time.monotonic()
        log(f"before: {before['total_rss_mib']:.0f} MiB, {before['chromium_processes']} chromium, "
            f"{before['ray_workers']} ray workers")
        load, done, steps, last = [], [0], [0], [t0]
        windows: list[tuple[float, int]] = []  # (minute, env steps) at each load sample

        def on_result(s) -> None:
            done[0] += 1
            steps[0] += s.steps
            now = time.monotonic()
            if now - last[0] >= args.interval_s:
                last[0] = now
                load.append(sample(fleet.pools, t0, steps[0], done[0], "load"))
                windows.append((load[-1]["t_min"], steps[0]))
                s_ = load[-1]
                log(f"{s_['t_min']:.1f} min: {done[0]} episodes, {steps[0]} steps, {s_['total_rss_mib']:.0f} MiB, "
                    f"{s_['chromium_processes']} chromium, {s_['running_episodes']} running, {s_['contexts']} contexts")

        ids: list[str] = []
        while (elapsed := time.monotonic() - t0) < args.minutes * 60:
            batch = specs(round_size(args, done[0], elapsed / 60))
            ids += [s.id for s in batch]
            fleet.run(batch, on_result)
        wall = time.monotonic() - t0
        after = settled(fleet.pools, t0, steps[0], done[0], "after")
        log(f"after: {after['total_rss_mib']:.0f} MiB, {after['chromium_processes']} chromium, "
            f"{after['ray_workers']} ray workers, {after['contexts']} contexts")
        restarts = sum(h["restarts"] for h in ray.get([p.health.remote() for p in fleet.pools]))
        stored = ray.get(buffer.count.remote())
        trajs = ray.get(buffer.query.remote())
    finally:
        fleet.shutdown()
        ray.shutdown()
    soaked = [t for t in trajs if not t.id.startswith("soak-r1-")]
    replay = soaked[-args.baseline_episodes:]
    log(f"bare Playwright: replaying {len(replay)} of the soak's episodes, {args.concurrency} at once")
    bare, bare_c, bare_errors = None, args.concurrency, []
    for bare_c in dict.fromkeys([args.concurrency, min(args.concurrency, 16)]):  # full concurrency; 16 saturates 2 cores
        try:
            bare = asyncio.run(bare_browser(cfg, replay, bare_c))
            break
        except Exception as e:  # noqa: BLE001 - a loaded machine can time a bare page load out: say so, try fewer
            bare_errors.append(f"at {bare_c} at once: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            log(f"bare Playwright failed {bare_errors[-1]}")
    minutes = wall / 60
    excluded = ("ray::ReplayBuffer",)
    g = growth(before, after, load, minutes, excluded)
    # env steps/s between consecutive load samples (not the last round's tail, run below full concurrency)
    rates = [(b[1] - a[1]) / ((b[0] - a[0]) * 60) for a, b in zip([(0.0, 0)] + windows, windows) if b[0] > a[0]]
    thresholds = {"max_rss_growth_mib_per_min": args.max_growth,
                  "process_counts": "idle after == idle before (Ray workers holding actors; Chromium processes other "
                                    "than renderers and timed services), Chromium renderers after <= before + one "
                                    "spare per browser, timed services <= one per browser",
                  "chromium_timed_services": list(TIMED_SERVICES),
                  "open_contexts_and_pages_after": 0, "excluded_from_rss": list(excluded)}
    checks = {
        "chromium_processes_same": chromium_same(before, after, cfg.rollout.browser_pools),
        "ray_workers_same": after["ray_workers"] == before["ray_workers"],
        "no_open_contexts_or_pages": after["contexts"] == 0 and after["pages"] == 0,
        "idle_growth_ok": g["idle_total_mib_per_min"] <= args.max_growth,
        "load_slope_ok": g["load_slope_mib_per_min_second_half"] is None
        or g["load_slope_mib_per_min_second_half"] <= args.max_growth,
    }
    buf_growth = after["processes"].get("ray::ReplayBuffer", {}).get("rss_mib", 0) - \
        before["processes"].get("ray::ReplayBuffer", {}).get("rss_mib", 0)
    return {
        "benchmark": "soak", "policy": "tiny random model (2 layers, SmolLM2 tokenizer), transformers engine, "
        + ("action grammar on: every step a real action" if cfg.rollout.constrained else "unconstrained"),
        "concurrency": args.concurrency, "minutes": round(minutes, 2), "tasks": len(tasks),
        "workers": cfg.rollout.workers, "browser_pools": cfg.rollout.browser_pools,
        "episodes": done[0], "env_steps": steps[0], "stored_trajectories": stored, "episodes_started": len(ids),
        "pool_restarts": restarts, "episode_reruns": fleet.reruns,
        "steps_per_s": round(steps[0] / wall, 2), "episodes_per_min": round(done[0] / minutes, 1),
        "bare_steps_per_s": round(bare["steps_per_s"], 2) if bare else None, "bare_episodes": len(replay),
        "bare_concurrency": bare_c if bare else None, "bare_errors": bare_errors,
        "soak_over_bare_ratio": round(steps[0] / wall / bare["steps_per_s"], 3) if bare else None,
        "throughput_last_over_first": round(rates[-1] / rates[0], 3) if len(rates) >= 3 and rates[0] else None,
        "rss_before_mib": before["total_rss_mib"], "rss_after_mib": after["total_rss_mib"],
        "chromium_processes_before": before["chromium_processes"], "chromium_processes_after": after["chromium_processes"],
        "ray_workers_before": before["ray_workers"], "ray_workers_after": after["ray_workers"],
        "max_chromium_processes_under_load": max([s["chromium_processes"] for s in load], default=None),
        "growth": g, "replay_buffer_growth_mib_per_1k_trajectories": round(buf_growth / max(stored, 1) * 1000, 2),
        "thresholds": thresholds, "checks": checks, "leak_free": all(checks.values()),
        "samples": [before, *load, after],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (progress goes to stderr)")
    ap.add_argument("--concurrency", type=int, default=64, help="episodes at once")
    ap.add_argument("--minutes", type=float, default=10.0, help="how long the soak runs (after a warm-up round)")
    ap.add_argument("--interval-s", type=float, default=30.0, help="seconds between samples under load")
    ap.add_argument("--tasks", help=f"MiniWoB++ task names, comma-separated (default: {','.join(TASKS)})")
    ap.add_argument("--max-steps", type=int, default=5, help="steps per episode at most")
    ap.add_argument("--max-growth", type=float, default=10.0, help="leak_free threshold: RSS growth, MiB/min")
    ap.add_argument("--round-factor", type=int, default=4,
                    help="most episodes handed to the fleet per round, in multiples of --concurrency (the tail of a "
                         "round runs below full concurrency; a round is not cut short at the soak's end)")
    ap.add_argument("--baseline-episodes", type=int, default=64, help="soak episodes replayed by the bare baseline")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key (repeatable)")
    args = ap.parse_args()
    c = args.concurrency
    pools = 2 if c >= 8 else 1
    workers = 2 if c >= 2 else 1
    cfg = load_config("tiny", [
        "rollout.engine=transformers", "rollout.constrained=true", "rollout.max_new_tokens=80",
        f"rollout.workers={workers}", f"rollout.episodes_per_worker={-(-c // workers)}", f"rollout.browser_pools={pools}",
        f"env.browser.contexts={-(-c // pools)}", f"env.max_steps={args.max_steps}", "env.browser.action_timeout_s=30",
        "env.browser.episode_timeout_s=600", "env.browser.navigation_timeout_s=60", "env.browser.idle_timeout_s=600",
        "env.observation.max_chars=1500", *args.overrides])
    out = os.fdopen(os.dup(1), "w")  # stdout carries the JSON line only: Ray's worker logs go to stderr
    os.dup2(2, 1)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        result = soak(args, cfg, tiny_model(Path(tmp) / "tiny-model"), Path(tmp))
    print(json.dumps(result), file=out, flush=True)
    if not args.json:
        for key in ("leak_free", "checks", "growth", "steps_per_s", "bare_steps_per_s", "soak_over_bare_ratio"):
            log(f"{key}: {result[key]}")


if __name__ == "__main__":
    main()
