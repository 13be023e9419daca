"""Benchmark: the rollout pipeline end to end (Ray, RolloutFleet, vLLM engine, BrowserPool, replay buffer)
against the two things it is made of, measured bare in the same run on the same work:

- (a) bare vLLM: ``vllm.LLM.generate`` on every prompt the pipeline sent (read back from the replay
  buffer), greedy, the pipeline's ``max_tokens`` and engine settings, at most the pipeline's concurrency
  at once (continuous batching, so generation never waits for a browser: an upper bound);
- (b) bare browser: raw Playwright replaying every action the pipeline took on the same task and seed,
  at the pipeline's concurrency (new context, start page, seeded episode, then per step: the action,
  a load-state wait, the reward, the same observation script; like ``bench/envpool.py``'s bare loop).

The pipeline cannot beat ``min(a, b)`` when generation and browsing run on separate resources (a
cluster), nor ``1/(1/a + 1/b)`` when they share the same CPU cores (one machine): ``pipeline_ratio``
is pipeline steps/s over the bound that applies (target >= 0.9). Also reported: steps/s with 1 and 2
rollout workers (``scaling_2_over_1``), and tokens/s of our vLLM engine against our transformers
engine on the same prompts submitted at once (``vllm_over_transformers``).

Episodes run in eval mode (greedy) and unconstrained (``rollout.constrained=false`` whatever the preset
says: the bare side has no grammar), so the replays are the same work. Every heavy side runs alone:
the pipeline first (only ``fleet.run`` is timed, not start-up), then Ray is shut down, then the bare
browser in this process, then each vLLM / transformers measurement in a subprocess of its own. Each
side is warmed up before its clock starts (one untimed episode per worker; one short generation; one
page load), so that one-off first-call costs count nowhere.

Diagnostics, to tell where the pipeline loses time: ``vllm_episodic_steps_per_s`` (bare vLLM fed in
the pipeline's order: an episode's next prompt once its last one finished, ``concurrency`` episodes
at once, no browser: what the episodes' shape alone costs); ``pipeline_cpu_s`` (CPU seconds of each
kind of process during the timed run and the machine's busy total), ``pipeline_worker_cores`` and
``pipeline_machine_cores`` (cores the engines and everything kept busy; bare vLLM ran
``vllm_torch_threads`` threads); and ``other_cpu_s``, the CPU seconds processes not ours used during
each timed phase: other jobs on the machine, whose figures are then noise (rerun on a quiet machine).
``pipeline_ratio_factors`` splits ``pipeline_ratio`` into a product (``ratio_factors``): episode order,
engine steps, ms per engine step, engine busy time and the browser's term of the bound.

    python bench/rollout.py --json                     # one JSON line on stdout
    python bench/rollout.py --json --tiny --episodes 1 --tasks click-button,click-link   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webrl.config import WebRLConfig, load_config  # noqa: E402


# the 12 tasks of the README's SmolLM2 baseline and of every figure recorded for this bench (there are
# more scripted policies now; a fixed list keeps the figures comparable)
DEFAULT_TASKS = ["choose-list", "click-button", "click-checkboxes", "click-dialog", "click-link", "click-option",
                 "click-tab", "click-test", "enter-password", "enter-text", "focus-text", "login-user"]


def log(msg: str) -> None:
    print(f"[bench/rollout] {msg}", file=sys.stderr, flush=True)


# ---- where the CPU went ------------------------------------------------------------------------
_KINDS = (("RolloutWorker", "rollout_workers"), ("BrowserPool", "browser_pool"), ("ReplayBuffer", "replay_buffer"),
          ("chrom", "chromium"), ("playwright", "playwright"), ("ray", "ray"))


def cpu_snapshot() -> dict:
    """CPU seconds so far of every process, by kind: ours (this process and its descendants: Ray's
    services and actors, Chromium, subprocesses) or ``other`` (anything else on the machine: other
    jobs, whose CPU during a timed phase is noise in it). Processes of ours that outlive their parent
    are reparented to init; what init reaps is left out rather than called ``other``."""
    import psutil

    procs = {}
    for p in psutil.process_iter(["ppid", "cmdline", "cpu_times", "status"]):
        t = p.info["cpu_times"]
        if t is None or (p.info["status"] == psutil.STATUS_ZOMBIE and p.info["ppid"] == 1):
            continue
        reaped = t.children_user + t.children_system if p.pid != 1 else 0.0  # closed Chromium renderers, ...
        procs[p.pid] = (p.info["ppid"], " ".join(p.info["cmdline"] or []), t.user + t.system + reaped)
    me, out = os.getpid(), {}
    for pid, (ppid, cmd, cpu) in procs.items():
        ancestor, seen = pid, set()
        while ancestor not in (me, 0, 1) and ancestor in procs and ancestor not in seen:
            seen.add(ancestor)
            ancestor = procs[ancestor][0]
        kind = ("driver" if pid == me else next((k for key, k in _KINDS if key in cmd), "ours_other")) \
            if ancestor == me else "other"
        out[kind] = out.get(kind, 0.0) + cpu
    machine = psutil.cpu_times()
    out["machine_busy"] = sum(machine) - machine.idle - machine.iowait
    return out


def cpu_delta(before: dict, after: dict) -> dict:
    return {k: round(max(after.get(k, 0.0) - before.get(k, 0.0), 0.0), 1) for k in after}


# ---- the pipeline -------------------------------------------------------------------------------
def run_pipeline(cfg: WebRLConfig, buffer, model: str, tasks, episodes: int, run: str) -> dict:
    """Start a fleet of ``cfg.rollout.workers`` workers, wait until it is ready, time ``fleet.run``."""
    import ray

    from actors.fleet import RolloutFleet
    from webrl.evaluate import eval_specs
    from webrl.types import EpisodeSpec

    specs = eval_specs(run, tasks, episodes, cfg.seed)
    warmup = [EpisodeSpec(id=f"{run}-warmup{i}", task_id=tasks[0].id, seed=cfg.seed + 10_000 + i, mode="eval")
              for i in range(cfg.rollout.workers)]  # one per worker: the fleet gives each worker one
    t0 = time.perf_counter()
    fleet = RolloutFleet(cfg, buffer, model_path=model)
    try:
        fleet.wait_ready()
        ray.get([p.start.remote() for p in fleet.pools])  # Chromium up before the clock starts
        fleet.run(warmup)  # first calls (engine kernels, actor calls, page cache) out of the timed run
        startup = time.perf_counter() - t0
        capacity = fleet.capacity()
        log(f"{run}: {cfg.rollout.workers} worker(s) ready in {startup:.0f} s; {len(specs)} episodes, "
            f"{min(capacity, len(specs))} at once")
        before = fleet.info()
        cpu0, t0 = cpu_snapshot(), time.perf_counter()
        summaries = fleet.run(specs)
        wall, cpu = time.perf_counter() - t0, cpu_delta(cpu0, cpu_snapshot())
        engine = engine_delta(before, fleet.info())
    finally:
        fleet.shutdown()
    ids = {s.id for s in summaries}
    trajs = sorted((t for t in ray.get(buffer.query.remote()) if t.id in ids), key=lambda t: t.id)
    steps = sum(len(t.steps) for t in trajs)
    log(f"{run}: {steps} steps in {wall:.1f} s = {steps / wall:.2f} steps/s; CPU s: {cpu}")
    all_steps = [s for t in trajs for s in t.steps]
    return {
        "trajectories": trajs, "steps": steps, "episodes": len(trajs), "wall_s": wall, "startup_s": startup,
        "steps_per_s": steps / wall, "concurrency": min(capacity, len(specs)),
        "generated_tokens": sum(len(s.action_token_ids) for s in all_steps),
        "mean_generate_s": sum(s.generate_s for s in all_steps) / max(len(all_steps), 1),
        "mean_env_s": sum(s.env_s for s in all_steps) / max(len(all_steps), 1),
        "engine": engine,
        "reruns": sum(t.attempt > 1 for t in trajs), "cpu_s": cpu,
    }


def ratio_factors(a: float, bound: float, episodic: float, wall_s: float, pipeline_engine: dict,
                  episodic_engine: dict) -> dict:
    """``pipeline_ratio`` as the product of where the pipeline loses against the bound, each a factor (1: nothing
    lost). With ``a`` bare vLLM steps/s (all prompts queued), ``episodic`` bare vLLM fed in the episodes' order,
    and each side's engine steps (count, ms each):

    - ``episode_order``: episodic / a, what waiting for an episode's previous action costs generation alone;
    - ``engine_steps``: bare's engine steps over the pipeline's (more steps: smaller batches);
    - ``step_speed``: bare's ms per engine step over the pipeline's (slower steps: CPU contention around the engine);
    - ``engine_busy``: the pipeline's engine-seconds of stepping per wall second (less than 1: the engines sat
      idle, every episode waiting on a browser, Ray or the prompt builder; above 1 with several workers);
    - ``bound_term``: a / bound, the browser's share of the bound (1 where the bound is bare vLLM alone).

    Their product is the pipeline's steps/s over the bound: episodic/a * (n_e m_e) / (n_p m_p) * n_p m_p / wall
    * a / bound = (steps / wall) / bound, since episodic = steps / (n_e m_e)."""
    n_p, m_p = pipeline_engine["steps"], pipeline_engine["step_ms"]
    n_e, m_e = episodic_engine["steps"], episodic_engine["step_ms"]
    return {"episode_order": episodic / a, "engine_steps": n_e / n_p, "step_speed": m_e / m_p,
            "engine_busy": n_p * m_p / 1000 / wall_s, "bound_term": a / bound}


def engine_delta(before: list[dict], after: list[dict]) -> dict:
    """What the workers' engines did between two ``fleet.info()`` snapshots: steps, the mean batch
    (requests in flight per step), ms per step and generated tokens per second of stepping."""
    keys = ("steps", "batched", "generate_s", "generated_tokens")
    d = {k: sum(a.get(k, 0) for a in after) - sum(b.get(k, 0) for b in before) for k in keys}
    return {"steps": d["steps"], "mean_batch": d["batched"] / d["steps"] if d["steps"] else None,
            "step_ms": 1000 * d["generate_s"] / d["steps"] if d["steps"] else None,
            "tokens_per_s": d["generated_tokens"] / d["generate_s"] if d["generate_s"] else None}


# ---- (b) the bare browser -----------------------------------------------------------------------
async def _bare_act(page, action, element_count: int, timeout_s: float) -> None:
    """The action with raw Playwright; what fails is ignored (the pipeline only reports it to the agent).
    Element ids the last observation did not hand out are refused without touching the page, as ours are."""
    from playwright.async_api import Error as PlaywrightError

    from webrl.types import ActionKind as K

    ms = timeout_s * 1000
    kind = action.kind
    try:
        if kind in (K.exit, K.invalid):
            return
        if kind in (K.scroll_up, K.scroll_down):
            await page.evaluate("s => window.scrollBy(0, s * window.innerHeight * 2 / 3)", -1 if kind is K.scroll_up else 1)
        elif kind is K.press_enter:
            await page.keyboard.press("Enter")
        elif kind is K.go_back:
            await page.go_back(wait_until="domcontentloaded", timeout=ms)
        elif kind is K.go_forward:
            await page.go_forward(wait_until="domcontentloaded", timeout=ms)
        elif action.element is not None and action.element < element_count:
            loc = page.locator(f'[data-webrl-id="{action.element}"]').first
            ms = ms * 3 / 4
            if kind is K.click:
                await loc.click(timeout=ms)
            elif kind is K.hover:
                await loc.hover(timeout=ms)
            elif kind is K.select:
                options = await loc.evaluate("el => Array.from(el.options || [], o => o.text)", timeout=ms)
                wanted = (action.argument or "").strip().lower()
                index = next((i for i, t in enumerate(options) if t.strip().lower() == wanted), None)
                if index is not None:
                    await loc.select_option(index=index, timeout=ms)
            else:  # type, search
                await loc.fill("", timeout=ms)
                await loc.press_sequentially(action.argument or "", timeout=ms)
                if kind is K.search:
                    await loc.press("Enter", timeout=ms)
    except PlaywrightError:
        pass


async def bare_browser(cfg: WebRLConfig, trajs, concurrency: int) -> dict:
    """Replay every trajectory's actions on its task and seed with raw Playwright; time it all."""
    from playwright.async_api import async_playwright

    from envpool.chromium import find_executable
    from envpool.observation import OBSERVE_JS, script_options
    from envpool.suites.miniwob import MiniWoBSuite

    suite = MiniWoBSuite(cfg.env)
    opts = script_options(cfg.env.observation)
    b = cfg.env.browser
    same = compared = 0
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_executable(b), headless=True, args=b.launch_args)
        sem = asyncio.Semaphore(concurrency)

        async def episode(traj):
            nonlocal same, compared
            task = suite.task(traj.task_id)
            async with sem:
                ctx = await browser.new_context(viewport={"width": b.viewport_width, "height": b.viewport_height})
                page = await ctx.new_page()
                await page.goto(task.start_url, wait_until="load")
                await suite.begin(page, task, traj.seed)
                obs = await page.evaluate(OBSERVE_JS, opts)
                pages = [s.observation.html for s in traj.steps[1:]] + [traj.final_observation.html
                                                                          if traj.final_observation else None]
                for step, expected in zip(traj.steps, pages):
                    await _bare_act(page, step.action, obs["elementCount"], b.action_timeout_s)
                    await page.wait_for_load_state("domcontentloaded")
                    await suite.reward(page, task)
                    obs = await page.evaluate(OBSERVE_JS, opts)
                    if expected is not None:
                        compared += 1
                        same += obs["html"] == expected
                await ctx.close()

        warm = await browser.new_context()  # warm-up: the first context and the page cache
        await (await warm.new_page()).goto(suite.task(trajs[0].task_id).start_url, wait_until="load")
        await warm.close()
        t0 = time.perf_counter()
        await asyncio.gather(*(episode(t) for t in trajs))
        wall = time.perf_counter() - t0
        await browser.close()
    suite.close()
    steps = sum(len(t.steps) for t in trajs)
    return {"steps": steps, "wall_s": wall, "steps_per_s": steps / wall, "same_pages": same / compared if compared else None}


# ---- (a) bare vLLM and the engine comparison, each in a subprocess ------------------------------
def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def part_vllm(job: dict) -> dict:
    """Bare vLLM with our engine's settings on the pipeline's prompts (``job["episodes"]``: each
    episode's prompts in order), twice: every prompt queued at once through ``LLM.generate`` (the
    bound), then episode by episode (each episode's next prompt queued when its last one finishes,
    ``concurrency`` episodes at once: the order the pipeline cannot escape, with no browser)."""
    cfg = WebRLConfig.model_validate(job["config"])
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.rollout.vllm.kv_cache_gib))
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process, as our engine runs it
    import torch
    from vllm import LLM, SamplingParams

    from actors.engine import model_max_len, resolve_dtype
    from actors.model_store import resolve_model

    path = resolve_model(job["model"])
    max_len = model_max_len(path, cfg.learner.context_tokens)
    r, c = cfg.rollout, job["concurrency"]
    args = {"model": str(path), "dtype": _dtype_name(resolve_dtype(r.dtype)), "seed": cfg.seed, "max_model_len": max_len,
            "enforce_eager": r.vllm.enforce_eager, "max_num_seqs": c, "disable_log_stats": True}
    if torch.cuda.is_available():
        args["gpu_memory_utilization"] = r.vllm.gpu_memory_utilization
    llm = LLM(**(args | r.vllm.engine_args))
    episodes = job["episodes"]
    prompts = [p for e in episodes for p in e]

    def params(p):
        return SamplingParams(temperature=r.eval_temperature, top_p=r.top_p, logprobs=0,  # as our engine asks
                              max_tokens=min(r.max_new_tokens, max_len - len(p)))

    # warm-up: the first generation pays one-off costs; half a prompt caches no more than the pipeline's
    # warm-up episode did (the shared system prompt and template)
    llm.generate([{"prompt_token_ids": prompts[0][:len(prompts[0]) // 2]}],
                 SamplingParams(temperature=0, max_tokens=8), use_tqdm=False)
    t0 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], [params(p) for p in prompts], use_tqdm=False)
    wall = time.perf_counter() - t0

    llm.reset_prefix_cache()  # the second pass must not find the first one's prompts cached
    engine, queue = llm.llm_engine, list(range(len(episodes)))[::-1]

    def start(e: int, k: int) -> None:
        engine.add_request(f"{e}-{k}", {"prompt_token_ids": episodes[e][k]}, params(episodes[e][k]))

    t0, steps, batched = time.perf_counter(), 0, 0
    for _ in range(min(c, len(queue))):
        start(queue.pop(), 0)
    while engine.has_unfinished_requests():
        steps, batched = steps + 1, batched + engine.get_num_unfinished_requests()
        for out in engine.step():
            if out.finished:
                e, k = map(int, out.request_id.split("-"))
                if k + 1 < len(episodes[e]):
                    start(e, k + 1)
                elif queue:
                    start(queue.pop(), 0)
    episodic_wall = time.perf_counter() - t0
    return {"wall_s": wall, "token_ids": [list(o.outputs[0].token_ids) for o in outs],
            "episodic_wall_s": episodic_wall, "torch_threads": torch.get_num_threads(),
            "episodic_engine": {"steps": steps, "mean_batch": batched / steps, "step_ms": 1000 * episodic_wall / steps}}


def part_engine(job: dict) -> dict:
    """One of our engines (``make_engine``) on prompts submitted at once, greedy; tokens/s."""
    cfg = WebRLConfig.model_validate(job["config"])
    from actors.engine import Sampling, make_engine

    engine = make_engine(cfg, job["model"], seed=cfg.seed, engine=job["engine"])
    try:
        r = cfg.rollout
        sampling = Sampling(temperature=r.eval_temperature, top_p=r.top_p, max_tokens=r.max_new_tokens)
        first = job["prompts"][0]
        engine.submit(first[:len(first) // 2], Sampling(temperature=0, max_tokens=8)).result()  # warm-up
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1.0)  # keep the GIL while queueing: every prompt reaches the engine together
        t0 = time.perf_counter()
        try:
            futures = [engine.submit(p, sampling) for p in job["prompts"]]
        finally:
            sys.setswitchinterval(interval)
        gens = [f.result() for f in futures]
        wall = time.perf_counter() - t0
    finally:
        engine.close()
    tokens = sum(len(g.token_ids) for g in gens)
    return {"wall_s": wall, "generated_tokens": tokens, "tokens_per_s": tokens / wall}


PARTS = {"vllm": part_vllm, "engine": part_engine}


def in_subprocess(part: str, job: dict, tmp: Path) -> dict:
    """Run ``part`` in a fresh interpreter (nothing else of ours on the CPU meanwhile, memory freed after)."""
    src, dst = tmp / f"{part}-{job.get('engine', '')}-in.json", tmp / f"{part}-{job.get('engine', '')}-out.json"
    src.write_text(json.dumps(job))
    subprocess.run([sys.executable, __file__, "--part", part, "--input", str(src), "--output", str(dst)],
                   cwd=ROOT, stdout=sys.stderr, check=True)
    return json.loads(dst.read_text())


# ---- the whole run ------------------------------------------------------------------------------
def _finite(x: float) -> float | None:
    return round(x, 4) if x is not None and math.isfinite(x) else None


def tiny_model(folder: Path) -> str:
    """A 2-layer random model around SmolLM2's tokenizer (tests/conftest.build_tiny_model)."""
    from transformers import AutoTokenizer

    from actors.model_store import default_model_dir

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tiny_model

    build_tiny_model(AutoTokenizer.from_pretrained(default_model_dir(tokenizer_only=True)), folder)
    return str(folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (progress goes to stderr)")
    ap.add_argument("--model", help="a Hugging Face directory or the default model's name (default: rollout.model)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model with SmolLM2's tokenizer (smoke run)")
    ap.add_argument("--tasks", help="MiniWoB++ task names, comma-separated (default: the README baseline's 12)")
    ap.add_argument("--episodes", type=int, default=1, help="episodes (seeds) per task")
    ap.add_argument("--engine-prompts", type=int, default=0,
                    help="prompts for the vLLM vs transformers comparison (default: the pipeline's concurrency)")
    ap.add_argument("--skip-scaling", action="store_true", help="no run with 2 rollout workers")
    ap.add_argument("--skip-engines", action="store_true", help="no vLLM vs transformers comparison")
    ap.add_argument("--config", metavar="PRESET|PATH", help="a preset in configs/ or a YAML file; default: local")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key (repeatable)")
    ap.add_argument("--part", choices=sorted(PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.part:
        Path(args.output).write_text(json.dumps(PARTS[args.part](json.loads(Path(args.input).read_text()))))
        return
    # stdout carries the JSON line only: whatever else writes to it (Ray's worker logs, vLLM) goes to stderr
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    result = run(args)
    print(json.dumps(result), file=out, flush=True)
    if not args.json:
        for key, value in result.items():
            log(f"{key}: {value}")


def run(args) -> dict:
    from envpool.suites import Suites

    # the bare vLLM side decodes without the action grammar, so the pipeline does too (both sides do the
    # same work); --set rollout.constrained=true is refused rather than compared unfairly
    cfg = load_config(args.config, ["rollout.constrained=false", *args.overrides])
    if cfg.rollout.constrained:
        raise SystemExit("bench/rollout.py compares against bare vLLM without the action grammar: "
                         "leave rollout.constrained off")
    tmp_dir = tempfile.TemporaryDirectory(prefix="bench-rollout-")
    tmp = Path(tmp_dir.name)
    model = tiny_model(tmp / "tiny-model") if args.tiny else str(args.model or cfg.rollout.model)
    names = args.tasks.split(",") if args.tasks else DEFAULT_TASKS
    suites = Suites(cfg.env)
    tasks = suites.select("miniwob", names)
    suites.close()

    import ray

    from actors.replay_buffer import remote_buffer
    from webrl.cluster import init_ray

    init_ray(cfg.ray)
    nodes = sum(n["Alive"] for n in ray.nodes())
    buffer = remote_buffer(tmp / "buffer")
    stamp = time.strftime("%H%M%S")
    pipelines = {}

    def pipeline(workers: int) -> dict:
        if workers not in pipelines:
            c = cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"workers": workers})})
            pipelines[workers] = run_pipeline(c, buffer, model, tasks, args.episodes, f"bench-{stamp}-w{workers}")
        return pipelines[workers]

    main_run = pipeline(cfg.rollout.workers)
    if not args.skip_scaling:
        pipeline(1)
        pipeline(2)
    import psutil

    ours = psutil.Process().children(recursive=True)
    ray.shutdown()
    psutil.wait_procs(ours, timeout=30)  # Ray's processes gone (and reaped) before the next clock starts

    trajs, concurrency = main_run["trajectories"], main_run["concurrency"]
    steps = [s for t in trajs for s in t.steps]
    if not steps:
        raise SystemExit("the pipeline took no steps: nothing to compare against")

    log(f"bare browser: replaying {len(steps)} steps of {len(trajs)} episodes, {concurrency} at once")
    cpu0 = cpu_snapshot()
    browser = asyncio.run(bare_browser(cfg, trajs, concurrency))
    browser_other = cpu_delta(cpu0, cpu_snapshot()).get("other")
    log(f"bare browser: {browser['steps_per_s']:.2f} steps/s, same pages {browser['same_pages']}")

    log(f"bare vLLM: {len(steps)} prompts, at most {concurrency} at once")
    job = {"config": cfg.model_dump(mode="json"), "model": model, "concurrency": concurrency}
    cpu0 = cpu_snapshot()
    bare = in_subprocess("vllm", job | {"episodes": [[s.prompt_token_ids for s in t.steps] for t in trajs if t.steps]}, tmp)
    vllm_other = cpu_delta(cpu0, cpu_snapshot()).get("other")
    vllm_tokens = sum(len(t) for t in bare["token_ids"])
    same_outputs = sum(t == s.action_token_ids for t, s in zip(bare["token_ids"], steps)) / len(steps)
    a, b = len(steps) / bare["wall_s"], browser["steps_per_s"]
    episodic = len(steps) / bare["episodic_wall_s"]
    log(f"bare vLLM: {a:.2f} steps/s ({vllm_tokens / bare['wall_s']:.0f} tokens/s), same outputs {same_outputs:.0%}; "
        f"episode by episode {episodic:.2f} steps/s")

    bound_shared, bound_separate = 1 / (1 / a + 1 / b), min(a, b)
    applies = "shared" if nodes == 1 else "separate"
    bound = bound_shared if applies == "shared" else bound_separate
    p = main_run["steps_per_s"]
    factors = ratio_factors(a, bound, episodic, main_run["wall_s"], main_run["engine"], bare["episodic_engine"])
    log(f"pipeline_ratio {p / bound:.2f} = " + " x ".join(f"{k} {v:.2f}" for k, v in factors.items()))
    result = {
        "benchmark": "rollout", "model": "tiny (random, SmolLM2 tokenizer)" if args.tiny else model,
        "tasks": len(tasks), "episodes": main_run["episodes"], "workers": cfg.rollout.workers,
        "concurrency": concurrency, "ray_nodes": nodes,
        "pipeline_steps": main_run["steps"], "pipeline_wall_s": round(main_run["wall_s"], 2),
        "pipeline_steps_per_s": _finite(p), "pipeline_generated_tokens": main_run["generated_tokens"],
        "pipeline_mean_generate_s": _finite(main_run["mean_generate_s"]),
        "pipeline_mean_env_s": _finite(main_run["mean_env_s"]), "pipeline_reruns": main_run["reruns"],
        "pipeline_cpu_s": main_run["cpu_s"],  # CPU seconds of each kind of process during the timed run
        # cores the rollout workers (their engines) and the whole machine kept busy during it
        "pipeline_worker_cores": _finite(main_run["cpu_s"].get("rollout_workers", 0.0) / main_run["wall_s"]),
        "pipeline_machine_cores": _finite(main_run["cpu_s"]["machine_busy"] / main_run["wall_s"]),
        # the engines' own view of the timed run against bare vLLM fed episode by episode: fewer requests
        # per step means the episodes kept too few prompts in flight; slower steps mean contention
        "pipeline_engine": {k: _finite(v) if isinstance(v, float) else v for k, v in main_run["engine"].items()},
        "vllm_episodic_engine": {k: _finite(v) if isinstance(v, float) else v for k, v in bare["episodic_engine"].items()},
        "vllm_baseline": "vllm.LLM.generate on the pipeline's prompts, same sampling and engine args, "
                         f"max_num_seqs={concurrency} (continuous batching)",
        "vllm_steps_per_s": _finite(a), "vllm_wall_s": round(bare["wall_s"], 2), "vllm_generated_tokens": vllm_tokens,
        "vllm_same_outputs": _finite(same_outputs), "vllm_torch_threads": bare["torch_threads"],
        # diagnostic: bare vLLM in the pipeline's order (an episode's next prompt after its last one
        # finished, `concurrency` episodes at once, no browser): what the episodes' shape alone costs
        "vllm_episodic_steps_per_s": _finite(episodic),
        "pipeline_over_vllm_episodic": _finite(p / episodic),
        "browser_baseline": "bare Playwright replay of the pipeline's actions on the same task and seed",
        "browser_steps_per_s": _finite(b), "browser_wall_s": round(browser["wall_s"], 2),
        "browser_steps": browser["steps"], "browser_same_pages": _finite(browser["same_pages"]),
        "bound_shared": _finite(bound_shared), "bound_separate": _finite(bound_separate), "bound_applies": applies,
        "pipeline_ratio": _finite(p / bound),
        # the ratio as a product of factors (ratio_factors): which one is far below 1 says where time goes
        "pipeline_ratio_factors": {k: _finite(v) for k, v in factors.items()},
        # CPU seconds that processes not ours used during each phase (other jobs on the machine): noise
        "other_cpu_s": {"pipeline": main_run["cpu_s"].get("other"), "browser": browser_other, "vllm": vllm_other},
    }
    if not args.skip_scaling:
        w1, w2 = pipelines[1]["steps_per_s"], pipelines[2]["steps_per_s"]
        result |= {"workers1_steps_per_s": _finite(w1), "workers2_steps_per_s": _finite(w2),
                   "scaling_2_over_1": _finite(w2 / w1)}
    if not args.skip_engines:
        n = min(args.engine_prompts or concurrency, len(steps))  # spread over the run: early and late rounds
        prompts = [steps[round(i * (len(steps) - 1) / max(n - 1, 1))].prompt_token_ids for i in range(n)]
        log(f"engines: {len(prompts)} prompts at once, vLLM then transformers")
        engines = {kind: in_subprocess("engine", job | {"engine": kind, "prompts": prompts}, tmp)
                   for kind in ("vllm", "transformers")}
        v, t = engines["vllm"]["tokens_per_s"], engines["transformers"]["tokens_per_s"]
        result |= {"engine_prompts": len(prompts), "vllm_tokens_per_s": _finite(v), "transformers_tokens_per_s": _finite(t),
                   "vllm_engine_tokens": engines["vllm"]["generated_tokens"],
                   "transformers_engine_tokens": engines["transformers"]["generated_tokens"],
                   "vllm_over_transformers": _finite(v / t)}
    tmp_dir.cleanup()
    return result


if __name__ == "__main__":
    main()
