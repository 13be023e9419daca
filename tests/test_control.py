"""Watching and resizing a running job: the control actor's plain logic, then on a real local Ray cluster
with the tiny model (transformers engine), Chromium browser pools and the replay buffer:

- a fleet running a batch of episodes is scaled from 1 to 2 rollout workers through the control actor
  (`webrl scale rollout 2`, in-process, same Ray) mid-run; the new worker pulls the latest published weights
  (a real learner update, published by LearnerGroup) before its first episode, and every episode is stored
  exactly once;
- `webrl scale browsers 2` adds a BrowserPool the workers draw from; scaling back retires it;
- `webrl status` prints the snapshot the fleet posts; with no run going it says so and exits 1;
- what the workers, pools, fleet and learner recorded reaches Ray's Prometheus export."""

from __future__ import annotations

import socket
import time
import urllib.request

import pytest
import ray
import torch

from webrl.control import CONTROL_ACTOR, ControlLink, RunControl, start_control, status_rows

NAMESPACE = "webrl-test-control"


# ---- the plain class ---------------------------------------------------------------------------
def test_run_control_keeps_the_latest_snapshot_and_checks_what_it_is_asked():
    c = RunControl("train-x")
    assert c.status()["age_s"] is None and c.wanted_counts() == {"rollout": None, "browsers": None}
    c.post({"phase": 1, "stage": "rollout", "version": 3, "episodes": {"done": 4, "running": 2}})
    c.post({"phase": 1, "stage": "train", "version": 3})
    st = c.status()
    assert st["run"] == "train-x" and st["stage"] == "train" and "episodes" not in st and st["age_s"] >= 0
    assert c.scale("rollout", 4) == {"rollout": 4, "browsers": None}
    assert c.scale("browsers", 8)["browsers"] == 8
    with pytest.raises(ValueError, match="choose one of rollout, browsers"):
        c.scale("learner", 2)
    with pytest.raises(ValueError, match="at least 1"):
        c.scale("rollout", 0)
    rows = dict(status_rows(c.status() | {"phases": 3}))
    assert rows["phase"] == "1 of 3: train" and rows["policy version"] == "3"
    assert "(wanted 4)" in rows["rollout workers"] and "(wanted 8)" in rows["browser pools"]


# ---- on a local cluster ------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    port = _free_port()
    ray.init(num_cpus=4, include_dashboard=False, namespace=NAMESPACE, _node_ip_address="127.0.0.1",
             _metrics_export_port=port, _system_config={"metrics_report_interval_ms": 500})
    yield port
    ray.shutdown()


def _scrape(port: int, wanted: set[str], timeout_s: float = 30) -> dict[str, list[tuple[str, float]]]:
    """Series of Ray's Prometheus export by name (labels, value), once every ``wanted`` name is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        series: dict[str, list[tuple[str, float]]] = {}
        for line in text.splitlines():
            if line.startswith("ray_webrl_"):
                head, value = line.rsplit(" ", 1)
                name, _, labels = head.partition("{")
                series.setdefault(name, []).append((labels, float(value)))
        if wanted <= set(series) or time.monotonic() > deadline:
            return series
        time.sleep(0.5)


@pytest.mark.browser
@pytest.mark.slow  # ~2.5 min on the 2 loaded cores (Ray start, two engines, a learner rank, Chromium)
def test_scaling_a_running_fleet_through_the_control_actor(cluster, tiny_model_dir, tokenizer, tmp_path, capsys):
    from actors.fleet import RolloutFleet
    from actors.replay_buffer import remote_buffer
    from learner.group import LearnerGroup
    from learner.learner import Batch
    from webrl.cli import main
    from webrl.config import LearnerConfig, load_config
    from webrl.evaluate import eval_specs
    from webrl.types import Task

    cfg = load_config("tiny", ["rollout.engine=transformers", "rollout.workers=1", "rollout.episodes_per_worker=2",
                               "rollout.max_parse_failures=1", "rollout.max_new_tokens=8", "env.browser.contexts=4",
                               f"ray.namespace={NAMESPACE}"])
    ns = [f"--set=ray.namespace={NAMESPACE}"]
    assert main(["status", *ns]) == 1  # no run yet
    assert f"no webrl run in namespace {NAMESPACE!r}" in " ".join(capsys.readouterr().out.split())

    control = ControlLink(start_control("test-run", NAMESPACE), interval_s=0.2)
    buffer = remote_buffer(str(tmp_path / "replay"))
    fleet = RolloutFleet(cfg, buffer, model_path=str(tiny_model_dir), control=control)
    group = LearnerGroup(1, str(tiny_model_dir), LearnerConfig(lr=0.05, optimizer="sgd"), micro_batch=2,
                         num_cpus_per_rank=0.5)
    try:
        ids = torch.tensor([tokenizer('do(action="Click", element="1")').input_ids] * 2)
        group.actor_step(Batch(ids, torch.ones_like(ids), torch.ones_like(ids), advantage=torch.tensor([1.0, 1.0])))
        fleet.wait_ready()
        version, _, _ = group.publish(fleet)
        assert version == 1
        control.update(fleet.status, phase=0, phases=1, stage="rollout", version=version)

        specs = eval_specs("scaled", [Task(id="miniwob/click-button", suite="miniwob", start_url="x")], 8, seed=0)
        asked, waited = [], []

        def on_result(summary):
            if not asked:  # mid-run: the user scales from the command line
                assert main(["scale", "rollout", "2", *ns]) == 0
                asked.append(time.monotonic())
            elif "w1" in fleet.workers and not waited:  # the run loop started it: let it load before the queue empties
                fleet.wait_ready(timeout_s=120)
                waited.append(time.monotonic())

        summaries = fleet.run(specs, on_result, timeout_s=400)
        assert fleet.size == 2 and "w1" in fleet.workers
        ids_run = [s.id for s in summaries]
        assert sorted(ids_run) == sorted(s.id for s in specs) and len(set(ids_run)) == len(ids_run)
        stored = [i for i in ray.get(buffer.ids.remote()) if i.startswith("scaled")]
        assert sorted(stored) == sorted(ids_run)  # every episode stored exactly once
        by_worker = {s.worker_id for s in summaries}
        assert by_worker == {"w0", "w1"}, by_worker  # the new worker ran episodes ...
        for s in summaries:  # ... with the latest published weights, as did the first
            assert ray.get(buffer.get.remote(s.id)).policy_versions == [1]

        # browsers: one more pool, every worker draws from both; then back to one (the extra one is retired)
        assert main(["scale", "browsers", "2", *ns]) == 0
        deadline = time.monotonic() + 10
        while len(fleet.pools) != 2 and time.monotonic() < deadline:
            fleet.follow_control()
            time.sleep(0.1)
        assert len(fleet.pools) == 2
        more = fleet.run(eval_specs("browsers", [Task(id="miniwob/click-button", suite="miniwob", start_url="x")], 2,
                                    seed=50), timeout_s=300)
        assert len(more) == 2
        drew = ray.get([w.handle.__ray_call__.remote(lambda self: len(self.envs)) for w in fleet.workers.values()])
        assert drew == [2, 2]
        assert sum(h.get("running_episodes", 0) >= 0 for h in fleet.status()["pools"]["health"]) in (0, 1, 2)

        control.update(fleet.status, stage="rollout done")
        time.sleep(0.3)
        assert main(["status", *ns]) == 0
        out = capsys.readouterr().out
        assert "test-run" in out and "0 of 1: rollout done" in out and "2 active" in out and "(wanted 2)" in out
        assert main(["status", "--json", *ns]) == 0
        st = __import__("json").loads(capsys.readouterr().out)
        assert st["version"] == 1 and st["episodes"]["done"] == 2 and st["workers"]["versions"] == [1]
        assert st["success"]["miniwob"]["episodes"] == 2 and st["staleness"]["max"] == 0

        fleet.scale_browsers(1)
        deadline = time.monotonic() + 30
        while fleet._retired_pools and time.monotonic() < deadline:
            fleet._reap_pools()
            time.sleep(0.2)
        assert not fleet._retired_pools and len(fleet.pools) == 1

        # what the workers, pools, fleet and learner recorded reaches Ray's Prometheus export
        wanted = {"ray_webrl_env_steps_total", "ray_webrl_env_step_seconds_bucket", "ray_webrl_browser_launches_total",
                  "ray_webrl_rollout_generated_tokens_total", "ray_webrl_rollout_episodes_total",
                  "ray_webrl_rollout_episode_seconds_bucket", "ray_webrl_rollout_staleness_bucket",
                  "ray_webrl_rollout_workers", "ray_webrl_weight_sync_seconds_bucket", "ray_webrl_learner_loss",
                  "ray_webrl_learner_tokens_total", "ray_webrl_policy_version"}
        series = _scrape(cluster, wanted)
        assert wanted <= set(series), wanted - set(series)
        finished = sum(v for labels, v in series["ray_webrl_rollout_episodes_total"] if 'mode="eval"' in labels)
        assert finished == len(specs) + len(more)
        assert {v for _, v in series["ray_webrl_policy_version"]} == {1.0}
        assert any('model="actor"' in labels for labels, _ in series["ray_webrl_learner_loss"])
    finally:
        group.shutdown()
        fleet.shutdown()
        ray.kill(control.handle)
    deadline = time.monotonic() + 10
    while CONTROL_ACTOR in {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)} and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert main(["status", *ns]) == 1  # the run is over
    assert "start one with webrl train" in " ".join(capsys.readouterr().out.split())
