"""`webrl train` end to end on a real local Ray cluster: the tiny random model (SmolLM2's tokenizer) on the
transformers engine, Chromium on the bundled sandbox sites (the six example tasks of tests/data/sandbox), the
ORM (the tiny model zero-shot), and the curriculum's generator as a fake OpenAI-compatible server on
127.0.0.1. A two-phase run is checked by what it produced: the replay buffer, policy versions reaching the
workers, generated tasks with lineage that the pool ran, per-phase checkpoints, the report and the plot; then
(marked slow) `--resume` continues it for a third phase without running or counting anything twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray

from tests.conftest import FakeChatServer

TASKS_DIR = Path(__file__).parent / "data" / "sandbox"
ANSWER = """1. Show me the newest review of the Summitcraft Sport Yoga Mat.
2. Subscribe to f/books and upvote its newest post.
3. Print the page"""


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=4, include_dashboard=False, namespace="webrl-test-train", _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def chat():
    server = FakeChatServer(ANSWER, None)
    yield server
    server.close()


def overrides(model: Path, chat_url: str, run_dir: Path) -> list[str]:
    sets = {
        "rollout.model": model, "rollout.engine": "transformers", "rollout.max_new_tokens": 12,
        "env.max_steps": 2, "env.observation.max_chars": 600, "env.sandbox.tasks_dir": TASKS_DIR, "run_dir": run_dir, "train.run_name": "tiny-run",
        "train.tasks": "[shop-product-price-0, forum-submit-post-0]", "train.test_tasks": "[admin-sales-report-0]",
        "train.episodes_per_task": 1, "train.generated_tasks_per_phase": 1, "learner.phases": 2, "train.warm_start": "sft",
        "learner.batch_size": 8, "learner.micro_batch": 4,
        "learner.actor_loss": "paper", "learner.lr": 1e-3, "orm.use": "rule_else_orm", "orm.budget_tokens": 2048,
        "replay.confidence_low": 0.0, "replay.confidence_high": 1.0,
        "curriculum.generator": "openai", "curriculum.endpoint_url": chat_url, "curriculum.model": "fake-llm",
        "curriculum.api_key_env": "null", "curriculum.value_low": 0.0, "curriculum.value_high": 1.0,
    }
    return [x for k, v in sets.items() for x in ("--set", f"{k}={v}")]


@pytest.fixture(scope="module")
def two_phases(cluster, chat, tiny_model_dir, tmp_path_factory):
    """A two-phase run of `webrl train --config tiny`: (run folder, report, the --set arguments)."""
    from webrl.cli import main

    root = tmp_path_factory.mktemp("train")
    sets = overrides(tiny_model_dir, chat.url, root)
    assert main(["train", "--config", "tiny", *sets]) == 0
    run = root / "tiny-run"
    return run, json.loads((run / "report.json").read_text()), sets


@pytest.mark.browser
def test_two_phases_produce_replay_versions_tasks_checkpoints_report_and_plot(two_phases):
    from actors.replay_buffer import ReplayBuffer
    from curriculum.task_store import TaskStore
    from learner.checkpoint import load_checkpoint
    from learner.learner import Learner
    from transformers import AutoModelForCausalLM
    from webrl.cli import main
    from webrl.config import LearnerConfig

    run, report, sets = two_phases
    # the report: every phase with its sections, versions increasing, the starting policy evaluated
    assert [p["phase"] for p in report["phases"]] == [0, 1]
    p0, p1 = report["phases"]
    for p in (p0, p1):
        assert {"train", "test", "orm", "curriculum", "replay", "learner", "times", "checkpoint"} <= set(p)
        assert p["train"]["episodes"] == 2 + p["tasks"]["generated"] and set(p["train"]["sites"]) <= {"shop", "forum"}
        assert p["test"]["episodes"] == 1 and list(p["test"]["sites"]) == ["admin"]
        assert p["learner"]["actor_steps"] >= 1 and p["learner"]["critic_steps"] >= 1
        # rule_else_orm: the seed tasks' rules judge them (the random policy fails them, so they seed the curriculum
        # whatever the random ORM says); the ORM judges the generated tasks, and scores the rest for agreement
        assert p["orm"]["orm_judged"] == p["tasks"]["generated"]
        assert p["orm"]["pairs"] >= 1 and 0 <= p["orm"]["agree"] <= p["orm"]["pairs"]
        assert p["replay"]["current_steps"] >= 1 and p["times"]["rollout"] > 0
    assert report["initial"]["episodes"] == 1
    # the warm start: the seed tasks' oracles (never a test task) -> webrl sft -> the policy the run started from
    warm = report["warm_start"]
    demos = [json.loads(line) for line in (run / "warm-start-demos" / "demos.jsonl").read_text().splitlines()]
    assert sorted(d["task_id"] for d in demos) == ["sandbox/forum-submit-post-0", "sandbox/shop-product-price-0"]
    assert warm["policy"] == str(run / "warm-start" / "policy") and warm["steps"] >= 1
    assert json.loads((run / "config.json").read_text())["rollout"]["model"] != warm["policy"]  # the user's config
    assert 0 < p0["version"] < p1["version"]
    assert p0["tasks"]["generated"] == 0 and p1["tasks"]["generated"] == 1  # train.generated_tasks_per_phase
    assert p0["curriculum"]["phase"] == 1 and p0["curriculum"]["kept"] >= 1
    assert p0["curriculum"]["rejected_by_filter"].get("feasibility", 0) >= 1  # "Print the page"
    assert p1["replay"]["past_trajectories"] == len({t for t in _successes(run, 0)})
    assert p1["curriculum"]["note"] == "last phase: nothing to evolve"

    # the replay buffer: both phases' train episodes with behaviour log-probs and the version that acted
    buf = ReplayBuffer(run)
    train = {k: buf.query(phase=k, mode="train") for k in (0, 1)}
    assert len(train[0]) == p0["train"]["episodes"] and len(train[1]) == p1["train"]["episodes"]
    for k, version in ((0, 0), (1, p0["version"])):  # phase 1 ran on the weights phase 0 published
        steps = [s for t in train[k] for s in t.steps]
        assert steps and all(len(s.logprobs) == len(s.action_token_ids) > 0 for s in steps)
        assert {s.policy_version for s in steps} == {version}
    assert len(buf.query(phase=-1, mode="eval")) == 1 and len(buf.query(phase=1, mode="eval")) == 1
    buf.close()

    # generated tasks with lineage, rolled out on the sandbox sites (the pool resolved them) and ORM-judged
    store = TaskStore(run)
    gen = store.tasks(phase=1, origin="generated")
    assert gen and all(t.id.startswith("gen/1/") and t.evaluator is None for t in gen)
    assert all(set(store.lineage(t.id)) <= {"sandbox/shop-product-price-0", "sandbox/forum-submit-post-0"} for t in gen)
    gen_trajs = [t for t in train[1] if t.task_id.startswith("gen/")]
    assert gen_trajs and all(t.steps and t.final_observation.url.startswith("http://127.0.0.1:") for t in gen_trajs)
    outcomes = {json.loads(line)["id"]: json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()}
    assert all(outcomes[t.id]["outcome"]["source"] == "orm" for t in gen_trajs)
    assert {e.filter for e in store.entries(status="rejected")} >= {"feasibility"}
    store.close()

    # checkpoints per phase that load into a learner, and a real PNG plot
    for k, p in enumerate(report["phases"]):
        folder = run / "checkpoints" / f"phase-{k}"
        policy = AutoModelForCausalLM.from_pretrained(folder / "policy")
        manifest = load_checkpoint(folder, Learner(policy, LearnerConfig(precision="fp32")))
        assert manifest["phase"] == k and manifest["version"] == p["version"]
    png = (run / "success_per_phase.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert main(["train", "--config", "tiny", *sets]) == 2  # a new run into the same folder is refused


@pytest.mark.browser
@pytest.mark.slow
def test_resume_continues_after_the_last_phase_without_running_anything_twice(two_phases):
    from actors.replay_buffer import ReplayBuffer
    from webrl.cli import main

    run, report, sets = two_phases
    p1 = report["phases"][1]
    with ReplayBuffer(run) as buf:
        before = {k: buf.count(phase=k, mode="train") for k in (0, 1)}
    assert main(["train", "--resume", str(run), "--set", "learner.phases=3"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert [p["phase"] for p in report["phases"]] == [0, 1, 2]
    assert report["phases"][2]["version"] > p1["version"]
    buf = ReplayBuffer(run)
    assert {k: buf.count(phase=k, mode="train") for k in (0, 1)} == before
    steps = [s for t in buf.query(phase=2, mode="train") for s in t.steps]
    assert steps and {s.policy_version for s in steps} == {p1["version"]}  # the workers got the resumed version
    buf.close()


def _successes(run: Path, phase: int) -> set[str]:
    """Task ids with a successful (judged) train episode in ``phase``."""
    from actors.replay_buffer import ReplayBuffer

    lines = [json.loads(line) for line in (run / "outcomes.jsonl").read_text().splitlines()]
    won = {j["id"] for j in lines if j["outcome"]["reward"] > 0}
    with ReplayBuffer(run) as buf:
        return {t.task_id for t in buf.query(phase=phase, mode="train") if t.id in won}


# ---- the pure parts: step samples, advantages, mini-batches (no Ray, no browser) --------------------

def _traj(tid: str, steps: int, success: bool):
    from webrl.types import Action, ActionKind, Observation, Outcome, Step, Trajectory

    obs = Observation(url="http://x/", html="<p>x</p>")
    return Trajectory(id=tid, task_id=f"task-{tid}", suite="sandbox", outcome=Outcome(reward=1.0 if success else 0.0),
                      steps=[Step(observation=obs, prompt_token_ids=[1, 2, 3 + i], action_text="a", action_token_ids=[7, 8],
                                  logprobs=[-0.1, -0.2], policy_version=0, action=Action(kind=ActionKind.exit))
                             for i in range(steps)])


def test_step_samples_pad_and_advantages_follow_the_trajectory():
    from learner.batches import minibatches, pad_batch, step_advantages, step_samples
    from webrl.config import LearnerConfig

    samples = step_samples([_traj("a", 2, True), _traj("b", 1, False)], max_tokens=64)
    assert [(s.trajectory_id, s.index, s.done, s.outcome) for s in samples] == [("a", 0, False, 1.0), ("a", 1, True, 1.0),
                                                                                 ("b", 0, True, 0.0)]
    assert step_samples([_traj("c", 1, True)], max_tokens=4) == []  # 3 prompt + 2 action tokens do not fit in 4
    batch = pad_batch(samples, pad_id=0)
    assert batch.input_ids[0].tolist() == [1, 2, 3, 7, 8] and batch.action_mask[0].tolist() == [0, 0, 0, 1, 1]
    assert pad_batch(samples, pad_id=0, actions=False).input_ids.shape == (3, 3)
    values = {("a", 0): 0.4, ("a", 1): 0.6, ("b", 0): 0.3}
    paper = step_advantages(samples, values, LearnerConfig(actor_loss="paper", advantage_lambda=0.5)).tolist()
    # A_t = λ(r_t + V(s_{t+1}) − V(s_t)) + (1 − λ)(r_T − V(s_t)); r_t = r_T at the last step, V = 0 after it
    assert paper == pytest.approx([0.5 * (0.6 - 0.4) + 0.5 * (1 - 0.4), 0.5 * (1 - 0.6) + 0.5 * (1 - 0.6),
                                   0.5 * (0 - 0.3) + 0.5 * (0 - 0.3)])
    ref = step_advantages(samples, values, LearnerConfig(actor_loss="reference")).tolist()
    assert ref == pytest.approx([1.0, 1.0, -0.6])  # success: positive; failure with V(s)=0.3: −0.05 − 0.3 < 0
    chunks = minibatches(list(range(10)), 4, seed=1, multiple=3)
    assert [len(c) for c in chunks] == [3, 3] and len(set(sum(chunks, []))) == 6


def test_actor_batches_carry_only_the_samples_the_loss_reads():
    """Under the reference loss only A > 0 counts, so the phase update sends those (topped up to a multiple of the
    ranks) and the learner takes the same step as on the whole chunk; under paper Eq. 6 every sample counts."""
    import torch

    from learner.batches import counted_rows, pad_batch, step_samples
    from learner.group import build_policy
    from learner.learner import Learner
    from webrl.config import LearnerConfig

    samples = step_samples([_traj("a", 2, True), _traj("b", 3, False), _traj("c", 1, True)], max_tokens=64)
    advantage = {s.key: (1.0 if s.outcome else -0.6) for s in samples}
    positive = [s for s in samples if advantage[s.key] > 0]
    assert counted_rows(samples, advantage, "paper") == samples
    assert counted_rows(samples, advantage, "reference") == positive
    assert len(counted_rows(samples, advantage, "reference", multiple=2)) == 4  # 3 counted + 1 filler for 2 ranks
    none = [s for s in samples if advantage[s.key] < 0]
    assert len(counted_rows(none, advantage, "reference", multiple=2)) == 2  # a step that skips itself, cheaply
    tiny = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1)
    states = []
    for rows in (samples, counted_rows(samples, advantage, "reference")):
        learner = Learner(build_policy(tiny, seed=0), LearnerConfig(lr=0.1, optimizer="sgd", precision="fp32"))
        batch = pad_batch(rows, pad_id=0)
        batch.advantage = torch.tensor([advantage[s.key] for s in rows])
        out = learner.actor_step(batch)
        states.append((out["actor_loss"], out["samples"], learner.policy.state_dict()))
    assert states[0][:2] == pytest.approx(states[1][:2]) and states[0][1] == 3
    for k, v in states[0][2].items():
        assert torch.allclose(v, states[1][2][k], atol=1e-6), k


def test_report_interval_and_plot(tmp_path):
    from webrl.train_report import plot_success, wilson

    assert wilson(0, 0) is None and wilson(5, 10)[0] < 0.5 < wilson(5, 10)[1]
    lo, hi = wilson(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2
    row = {"episodes": 4, "successes": 1, "success_rate": 0.25, "ci95": wilson(1, 4)}
    report = {"run": "r", "initial": row, "phases": [{"phase": 0, "train": row, "test": row}]}
    png = plot_success(report, tmp_path / "p.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # unseen instances of the train tasks get a line of their own
    other = {"episodes": 4, "successes": 3, "success_rate": 0.75, "ci95": wilson(3, 4)}
    report |= {"initial_instances": other, "phases": [{"phase": 0, "train": row, "test": row, "test_instances": other}]}
    assert plot_success(report, tmp_path / "q.png").read_bytes() != png


def test_phase_table_shows_unseen_instances_when_evaluated():
    from rich.console import Console

    from webrl.train_report import phase_table, wilson

    row = {"episodes": 4, "successes": 1, "success_rate": 0.25, "ci95": wilson(1, 4), "sites": {"miniwob": {
        "episodes": 4, "successes": 1, "success_rate": 0.25, "ci95": wilson(1, 4)}}}
    p = {"phase": 0, "version": 1, "train": row, "test": row, "orm": {"orm_judged": 0, "pairs": 0},
         "curriculum": {"enabled": False, "note": "off"}, "times": {"rollout": 1.0},
         "replay": {"current_steps": 1, "past_trajectories": 0, "replayed_steps": 0},
         "learner": {"critic_steps": 1, "actor_steps": 1, "critic_loss": 0.5, "actor_loss": 0.1}}

    def text(entry: dict) -> str:
        console = Console(width=200, record=True)
        console.print(phase_table(entry))
        return console.export_text()

    assert "unseen instances" not in text(p)
    assert "unseen instances of train tasks" in text(p | {"test_instances": row | {"successes": 3}})
    assert "3/4 75%" in text(p | {"test_instances": row | {"successes": 3, "success_rate": 0.75}})


def test_each_phase_draws_new_instances_never_the_demonstrations_or_the_unseen_test_instances():
    """MiniWoB++ seeds by use: demonstrations 0..warm_start_seeds-1, phase k's rollouts new seeds of their own,
    the unseen-instance evaluation a range no rollout reaches."""
    from webrl.train import train_specs
    from webrl.train_config import INSTANCE_SEEDS, TrainConfig
    from webrl.types import Task

    tasks = [Task(id=f"miniwob/{n}", suite="miniwob", start_url="x") for n in ("click-button", "enter-text")]
    seeds = [[s.seed for s in train_specs("r", k, tasks, 3, seed=7)] for k in range(4)]
    assert all(len(phase) == 6 and len(set(phase)) == 3 for phase in seeds)  # 3 instances of each task
    drawn = [set(phase) for phase in seeds]
    assert all(a.isdisjoint(b) for i, a in enumerate(drawn) for b in drawn[i + 1:])
    demos = set(range(TrainConfig().warm_start_seeds))
    assert all(demos.isdisjoint(d) and max(d) < 7 + INSTANCE_SEEDS for d in drawn)


def test_unseen_instances_are_refused_for_a_suite_of_fixed_tasks(tmp_path):
    from webrl.config import ConfigError, load_config
    from webrl.train import Trainer

    cfg = load_config(None, [f"run_dir={tmp_path}", "train.suite=sandbox", "train.test_split=test", f"env.sandbox.tasks_dir={TASKS_DIR}", "train.tasks=[]",
                             "train.test_tasks=[]", "train.test_instances_per_task=2"])
    with pytest.raises(ConfigError, match="test_instances_per_task=0"):
        Trainer(cfg).setup()
