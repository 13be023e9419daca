"""ReplayBuffer: exact round trip through disk, dedup by id, torn tails and corrupt lines, queries,
stats, sampling; and the Ray actor surviving a kill with nothing lost or counted twice."""

from __future__ import annotations

import logging
import os
import time

import pytest

from actors.replay_buffer import FILENAME, ReplayBuffer, SampledStep, remote_buffer
from webrl.types import Action, ActionKind, Observation, Outcome, OutcomeSource, Step, Trajectory


def make_traj(id: str, *, task_id: str = "sandbox/shop", phase: int = 0, reward: float = 0.0,
              n_steps: int = 2, suite: str = "sandbox", mode: str = "train", version: int = 3) -> Trajectory:
    steps = [
        Step(
            observation=Observation(url=f"http://site/{id}/{i}", html=f'<button id="1">go {i}</button>'),
            prompt_token_ids=[1, 2, 3 + i],
            action_text=f'do(action="Click", element="1")  # {i}',
            action_token_ids=[7, 8, 9],
            logprobs=[-0.125, -1.0 / 3.0, -2.718281828459045 * (i + 1)],
            policy_version=version + i,
            action=Action(kind=ActionKind.click, element=1, raw=f'do(action="Click", element="1")  # {i}'),
            reward=reward if i == n_steps - 1 else 0.0,
        )
        for i in range(n_steps)
    ]
    return Trajectory(id=id, task_id=task_id, suite=suite, instruction=f"do {task_id} — é ✓\nnew line",
                      steps=steps, outcome=Outcome(reward=reward, source=OutcomeSource.rule),
                      phase=phase, mode=mode, timings={"total_s": 1.5})


def lines(tmp_path) -> list[bytes]:
    return (tmp_path / FILENAME).read_bytes().splitlines(keepends=True)


def test_round_trip_is_exact(tmp_path):
    trajs = [make_traj(f"t{i}", phase=i % 2, reward=float(i % 2), n_steps=i + 1) for i in range(4)]
    trajs[0].steps[0].logprobs[0] = float("-inf")  # JSON's null would not load back
    with ReplayBuffer(tmp_path) as buf:
        assert [buf.add(t) for t in trajs[:2]] == [True, True]
        assert buf.add_many([trajs[2], trajs[3].model_dump(), trajs[2]]) == 2  # dicts too; in-batch dup once
    assert len(lines(tmp_path)) == 4 and all(line.endswith(b"\n") for line in lines(tmp_path))
    with ReplayBuffer(tmp_path) as again:
        assert again.query() == trajs  # same models, same order: logprobs, policy versions, outcome
        assert again.get("t3").steps[3].policy_version == 6
        assert again.get("t0").steps[0].logprobs == [float("-inf"), -1.0 / 3.0, -2.718281828459045]


def test_duplicate_add_writes_nothing(tmp_path):
    with ReplayBuffer(tmp_path) as buf:
        assert buf.add(make_traj("a")) is True
        assert buf.add(make_traj("a", reward=1.0)) is False  # same id: the first one stays
        assert buf.add_many([make_traj("a")]) == 0
        assert len(buf) == 1 and not buf.get("a").success
    assert len(lines(tmp_path)) == 1


def test_torn_tail_is_cut_and_next_add_lands_on_a_clean_line(tmp_path, caplog):
    with ReplayBuffer(tmp_path) as buf:
        buf.add_many([make_traj("a"), make_traj("b")])
    path = tmp_path / FILENAME
    good = path.read_bytes()
    half = make_traj("c").model_dump_json().encode()[:150]
    path.write_bytes(good + half)  # a crash mid-write: half a line, no newline
    with caplog.at_level(logging.WARNING, logger="webrl.jsonl_log"):
        buf = ReplayBuffer(tmp_path)
    assert "torn" in caplog.text
    assert buf.ids() == ["a", "b"] and path.read_bytes() == good
    assert buf.add(make_traj("c")) is True
    buf.close()
    with ReplayBuffer(tmp_path) as again:
        assert again.ids() == ["a", "b", "c"] and len(lines(tmp_path)) == 3


def test_invalid_last_line_with_newline_is_cut_too(tmp_path):
    with ReplayBuffer(tmp_path) as buf:
        buf.add(make_traj("a"))
    path = tmp_path / FILENAME
    good = path.read_bytes()
    path.write_bytes(good + b'{"id": "b", "task_\n')
    with ReplayBuffer(tmp_path) as buf:
        assert buf.ids() == ["a"]
    assert path.read_bytes() == good


def test_corrupt_middle_line_is_skipped_with_its_line_number(tmp_path, caplog):
    a, b = make_traj("a"), make_traj("b")
    (tmp_path / FILENAME).write_bytes(
        a.model_dump_json().encode() + b"\n" + b"\x00garbage{\n" + b.model_dump_json().encode() + b"\n"
        + a.model_dump_json().encode() + b"\n"  # a duplicate line: the first is kept
    )
    with caplog.at_level(logging.WARNING, logger="webrl.jsonl_log"):
        buf = ReplayBuffer(tmp_path)
    assert "line 2 is corrupt" in caplog.text and "duplicate" in caplog.text
    assert buf.query() == [a, b]
    assert buf.add(make_traj("a")) is False
    buf.close()


def test_queries_stats_and_lookup(tmp_path):
    with ReplayBuffer(tmp_path) as buf:
        buf.add_many([
            make_traj("p0-shop-ok", phase=0, reward=1.0, n_steps=3),
            make_traj("p0-shop-fail", phase=0, n_steps=2),
            make_traj("p0-form-fail", phase=0, task_id="sandbox/form", n_steps=1),
            make_traj("p1-shop-ok", phase=1, reward=1.0, n_steps=4),
            make_traj("p1-click-eval", phase=1, task_id="miniwob/click", suite="miniwob", mode="eval",
                      reward=1.0, n_steps=1),
        ])
        assert buf.ids(phase=0) == ["p0-shop-ok", "p0-shop-fail", "p0-form-fail"]
        assert buf.ids(success=True, phase=1) == ["p1-shop-ok", "p1-click-eval"]
        assert buf.ids(success=False) == ["p0-shop-fail", "p0-form-fail"]
        assert [t.id for t in buf.query(task_id="sandbox/shop", success=True)] == ["p0-shop-ok", "p1-shop-ok"]
        assert buf.ids(suite="miniwob") == buf.ids(mode="eval") == ["p1-click-eval"]
        assert buf.count(phase=1) == 2 and buf.count() == len(buf) == 5 and buf.count(phase=7) == 0
        assert buf.find("p1-") == ["p1-shop-ok", "p1-click-eval"] and buf.find("zz") == []
        with pytest.raises(KeyError, match="find"):
            buf.get("p9")
        assert buf.stats() == {
            "trajectories": 5, "steps": 11, "successes": 3, "success_rate": 0.6,
            "phases": {0: {"episodes": 3, "successes": 1}, 1: {"episodes": 2, "successes": 2}},
            "tasks": {"sandbox/shop": {"episodes": 3, "successes": 2},
                      "sandbox/form": {"episodes": 1, "successes": 0},
                      "miniwob/click": {"episodes": 1, "successes": 1}},
        }
        assert buf.stats(mode="eval")["success_rate"] == 1.0
    with ReplayBuffer(tmp_path / "empty") as empty:
        assert empty.stats()["success_rate"] == 0.0 and empty.sample(3) == []


def test_sample_is_deterministic_and_draws_steps_of_the_matching_trajectories(tmp_path):
    with ReplayBuffer(tmp_path) as buf:
        buf.add_many([make_traj(f"ok{i}", reward=1.0, n_steps=3) for i in range(5)]
                     + [make_traj(f"fail{i}", n_steps=3) for i in range(5)])
        steps = buf.sample(8, success=True, seed=7)
        assert steps == buf.sample(8, success=True, seed=7)
        assert steps != buf.sample(8, success=True, seed=8)
        assert len(steps) == 8 and len({(s.trajectory_id, s.index) for s in steps}) == 8  # no repeats
        for s in steps:
            assert isinstance(s, SampledStep) and s.trajectory_id.startswith("ok")
            assert s.step == buf.get(s.trajectory_id).steps[s.index] and s.outcome.success
        everything = buf.sample(100, success=True, seed=1)  # fewer than asked: all 15, once each
        assert sorted((s.trajectory_id, s.index) for s in everything) == [
            (f"ok{i}", j) for i in range(5) for j in range(3)]
        trajs = buf.sample(3, unit="trajectory", success=False, seed=0)
        assert trajs == buf.sample(3, unit="trajectory", success=False, seed=0)
        assert len({t.id for t in trajs}) == 3 and all(t.id.startswith("fail") for t in trajs)
        assert buf.sample(5, phase=9) == []
        with pytest.raises(ValueError, match="unit"):
            buf.sample(1, unit="episode")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, namespace="test-replay")
    yield ray
    ray.shutdown()


def test_actor_survives_a_kill_with_nothing_lost_or_counted_twice(ray_cluster, tmp_path):
    ray = ray_cluster
    buf = remote_buffer(tmp_path)
    trajs = [make_traj(f"t{i}", reward=float(i % 2)) for i in range(3)]
    assert ray.get([buf.add.remote(t) for t in trajs[:2]]) == [True, True]
    assert ray.get(buf.add_many.remote([trajs[2]])) == 1

    def pid():
        return ray.get(buf.__ray_call__.remote(lambda self: os.getpid()), timeout=5)

    old_pid = pid()
    ray.kill(buf, no_restart=False)  # asynchronous: the old process may still answer for a moment
    deadline, new_pid = time.monotonic() + 30, old_pid
    while new_pid == old_pid:  # Ray restarts the actor in a new process, which reloads the file
        try:
            new_pid = pid()
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            pass
        if new_pid == old_pid:
            assert time.monotonic() < deadline, "the replay buffer actor did not come back within 30 s"
            time.sleep(0.2)
    assert ray.get(buf.count.remote()) == 3
    assert ray.get(buf.query.remote()) == trajs
    assert ray.get(buf.add.remote(trajs[1])) is False
    assert ray.get(buf.stats.remote())["successes"] == 1
    assert ray.get(buf.add.remote(make_traj("t3"))) is True
    ray.kill(buf, no_restart=True)
    assert len(lines(tmp_path)) == 4
