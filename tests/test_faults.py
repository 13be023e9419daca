"""Fault injection during `webrl train --config tiny` on a real local Ray cluster (the tiny random model on the
transformers engine, Chromium on the sandbox example tasks of tests/data/sandbox): rollout workers, browser
pools, the replay buffer, a learner rank and the driver are killed at seeded points (``webrl/faults.py``); the
run completes (the driver with ``--resume``) and the accounting shows no trajectory lost and none counted
twice: every planned episode id stored exactly once in the replay buffer's file, the report's episode counts
equal to the plan, no id judged twice in the outcome ledger. (tests/test_rollout.py shows a killed worker's
episodes rerun within one fleet.run; these tests kill things while the whole phase loop runs.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from webrl import faults

ROOT = Path(__file__).resolve().parent.parent
TASKS_DIR = Path(__file__).parent / "data" / "sandbox"
TASKS = ["shop-product-price-0", "forum-submit-post-0"]
NAMESPACE = "webrl-test-faults"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, namespace=NAMESPACE, _node_ip_address="127.0.0.1")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def train_sets(model: Path, run_dir: Path, *, phases: int, episodes: int) -> list[str]:
    """A short run: the two sandbox tasks x ``episodes``, rule rewards only, no curriculum, no evaluation."""
    sets = {
        "rollout.model": model, "rollout.engine": "transformers", "rollout.max_new_tokens": 12,
        "rollout.episodes_per_worker": 4, "env.max_steps": 2, "env.observation.max_chars": 600,
        "env.sandbox.tasks_dir": TASKS_DIR, "run_dir": run_dir, "train.run_name": "faults",
        "train.tasks": f"[{', '.join(TASKS)}]", "train.episodes_per_task": episodes, "train.eval_initial": "false",
        "train.eval_episodes_per_task": 0, "train.orm_agreement": "false", "orm.use": "rule",
        "curriculum.enabled": "false", "learner.phases": phases, "learner.batch_size": 4, "learner.micro_batch": 2,
        "learner.actor_loss": "paper", "learner.lr": 1e-3, "replay.confidence_low": 0.0, "replay.confidence_high": 1.0,
    }
    return [f"{k}={v}" for k, v in sets.items()]


def planned(run: str, phases: int, episodes: int) -> dict[int, list[str]]:
    """The episode ids `webrl train` plans per phase (seed tasks only: the curriculum is off)."""
    from webrl.train import train_specs
    from webrl.types import Task

    tasks = [Task(id=f"sandbox/{t}", suite="sandbox", instruction="-", start_url="http://x/") for t in TASKS]
    return {k: [s.id for s in train_specs(run, k, tasks, episodes, seed=0)] for k in range(phases)}


def _assert_clean(run: Path, phases: int, episodes: int) -> dict:
    report = json.loads((run / "report.json").read_text())
    assert [p["phase"] for p in report["phases"]] == list(range(phases))
    acc = faults.accounting(run, planned(run.name, phases, episodes), report)
    assert faults.clean(acc), acc
    assert acc["planned"] == phases * episodes * len(TASKS)
    return report


def _train_in_process(model: Path, run_dir: Path, episodes: int, plan) -> tuple[Path, dict, list[dict]]:
    """One phase of `webrl train --config tiny` in this process, with the faults ``plan(trainer, run)`` gives
    injected while it runs; returns (run folder, report, the faults done)."""
    from webrl.config import load_config
    from webrl.train import Trainer

    trainer = Trainer(load_config("tiny", train_sets(model, run_dir, phases=1, episodes=episodes)))
    trainer.setup()
    try:
        injector = faults.Injector(plan(trainer, trainer.folder)).start()
        report = trainer.train()
        done = injector.stop()
        assert not injector.errors, injector.errors
        checks = {"worker_lost": trainer.fleet.workers["w0"].lost, "reruns": trainer.fleet.reruns}
    finally:
        trainer.close()
    _assert_clean(trainer.folder, phases=1, episodes=episodes)
    return trainer.folder, report | {"checks": checks}, done


def _stored(run: Path, n: int):
    return lambda: faults.stored_count(run) >= n


@pytest.mark.browser
def test_a_rollout_worker_and_the_replay_buffer_killed_mid_phase_lose_and_double_nothing(cluster, tiny_model_dir,
                                                                                         tmp_path):
    """A short phase (4 episodes): the rollout worker and the replay buffer killed (ray.kill; Ray restarts
    both) at seeded points while episodes stream in."""
    at = faults.seeded_points(seed=3, n=2, low=1, high=3)

    def plan(trainer, run):
        return [faults.Fault("rollout worker", _stored(run, at[0]), lambda: faults.kill_actor(trainer.fleet.workers["w0"].handle)),
                faults.Fault("replay buffer", _stored(run, at[1]), lambda: faults.kill_actor(trainer.buffer))]

    run, report, done = _train_in_process(tiny_model_dir, tmp_path, 2, plan)
    assert [d["fault"] for d in done] == ["rollout worker", "replay buffer"]
    assert report["checks"]["worker_lost"] == 1
    assert report["phases"][0]["learner"]["actor_steps"] >= 1 and "restarts" not in report["phases"][0]["learner"]


@pytest.mark.browser
@pytest.mark.slow
def test_pool_buffer_worker_and_a_learner_rank_killed_mid_phase(cluster, tiny_model_dir, tmp_path):
    """One phase of 8 episodes; killed at seeded points: the rollout worker, the browser pool and the replay
    buffer (ray.kill, Ray restarts each) while episodes stream in, then the learner rank (SIGKILL of its
    process) once the phase is judged and learning has begun: the phase's learning is redone from the last
    checkpoint (here the starting policy), once."""
    at = faults.seeded_points(seed=7, n=3, low=1, high=6)
    pids = {}

    def plan(trainer, run):
        pids["rank"] = faults.actor_pid(trainer.group.ranks[0])
        pids["worker"] = faults.actor_pid(trainer.fleet.workers["w0"].handle)
        ledger = run / "outcomes.jsonl"
        judged = lambda: ledger.exists() and ledger.read_bytes().count(b"\n") >= 8  # noqa: E731 - then learning starts
        return [faults.Fault("rollout worker", _stored(run, at[0]), lambda: faults.kill_actor(trainer.fleet.workers["w0"].handle)),
                faults.Fault("browser pool", _stored(run, at[1]), lambda: faults.kill_actor(trainer.fleet.pools[0])),
                faults.Fault("replay buffer", _stored(run, at[2]), lambda: faults.kill_actor(trainer.buffer)),
                faults.Fault("learner rank", judged, lambda: faults.kill_pid(pids["rank"]))]

    run, report, done = _train_in_process(tiny_model_dir, tmp_path, 4, plan)
    assert [d["fault"] for d in done] == ["rollout worker", "browser pool", "replay buffer", "learner rank"]
    assert report["checks"]["worker_lost"] >= 1
    learner = report["phases"][0]["learner"]
    assert learner.get("restarts") == 1 and learner["actor_steps"] >= 1  # the phase's learning ran again, once
    # the checkpoint holds the redone phase: its version is the one the report published
    manifest = json.loads((run / "checkpoints" / "phase-0" / "manifest.json").read_text())
    assert manifest["version"] == report["phases"][0]["version"]


def _train_cli(args: list[str], address: str) -> subprocess.Popen:
    env = os.environ | {"RAY_ADDRESS": address, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "webrl.cli", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.browser
@pytest.mark.slow
def test_driver_killed_then_resumed_with_worker_pool_buffer_kills_loses_and_doubles_nothing(cluster, tiny_model_dir,
                                                                                              tmp_path):
    """`webrl train` in a subprocess joined to this cluster: its rollout worker, browser pool and replay buffer
    processes SIGKILLed by pid at seeded points, then the driver itself (phase 1's rollouts, after phase 0's
    checkpoint: ``learner.phases=3``); `webrl train --resume` finishes the run; the accounting is clean."""
    episodes, phases = 3, 3
    sets = [x for s in train_sets(tiny_model_dir, tmp_path, phases=phases, episodes=episodes) for x in ("--set", s)]
    run = tmp_path / "faults"
    per_phase = episodes * len(TASKS)
    at = faults.seeded_points(seed=11, n=3, low=1, high=per_phase - 1)
    kill_at = per_phase + faults.seeded_points(seed=12, n=1, low=1, high=per_phase - 1)[0]

    def kill_process_of(class_name: str):
        def act():
            procs = faults.ray_processes(class_name)
            assert procs, f"no ray::{class_name} process"
            faults.kill_pid(procs[0].pid)
            return procs[0].pid
        return act

    stored = lambda n: lambda: faults.stored_count(run) >= n  # noqa: E731
    driver = _train_cli(["--config", "tiny", *sets], cluster)
    injector = faults.Injector([
        faults.Fault("rollout worker", stored(at[0]), kill_process_of("RolloutWorker")),
        faults.Fault("browser pool", stored(at[1]), kill_process_of("BrowserPool")),
        faults.Fault("replay buffer", stored(at[2]), kill_process_of("ReplayBuffer")),
        faults.Fault("driver", stored(kill_at), lambda: driver.kill()),
    ]).start()
    try:
        out, _ = driver.communicate(timeout=900)
    finally:
        done = injector.stop()
        driver.kill()
    assert not injector.errors, injector.errors
    assert [d["fault"] for d in done] == ["rollout worker", "browser pool", "replay buffer", "driver"], out[-3000:]
    assert driver.returncode == -9
    state = json.loads((run / "state.json").read_text())
    assert state["phases_done"] == 1, state  # killed in phase 1: phase 0 is the last complete one
    before = faults.jsonl_ids(run / "trajectories.jsonl")
    resumed = _train_cli(["--resume", str(run)], cluster)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-4000:]
    assert "resuming after phase 0" in " ".join(out.split())  # rich wraps long lines
    report = _assert_clean(run, phases=phases, episodes=episodes)
    after = faults.jsonl_ids(run / "trajectories.jsonl")
    assert after[: len(before)] == before  # what the killed driver's run stored stays, and is not run again
    assert 0 < report["phases"][0]["version"] < report["phases"][1]["version"] < report["phases"][2]["version"]


DRIVER = """
import sys, time
import ray
from envpool.pool import remote_pool
from webrl.config import EnvConfig
ray.init(num_cpus=2, include_dashboard=False, namespace="webrl-test-sigterm", _node_ip_address="127.0.0.1")
pool = remote_pool(EnvConfig())
ray.get(pool.start.remote())
print(ray.get(pool.__ray_call__.remote(lambda self: self.tag)), flush=True)
time.sleep(600)
"""


@pytest.mark.browser
def test_a_driver_stopped_by_sigterm_leaves_no_chromium_behind():
    """`kill <driver>` (what a job manager or Ctrl-\\\\ does): Ray ends the pool actor's process, and its Chromium
    (found by the pool's ``--webrl-pool=<tag>`` mark) goes with it rather than living on without a parent."""
    import signal
    import time

    from envpool.chromium import browser_pids

    proc = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        tag = proc.stdout.readline().strip()
        assert tag and browser_pids(tag), "the pool's Chromium should be running before the driver is stopped"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 30
        while browser_pids(tag) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not browser_pids(tag), f"Chromium outlived its driver: {browser_pids(tag)}"
    finally:
        proc.kill()
