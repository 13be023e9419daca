"""The agent's early stops, the eval bookkeeping and the trajectory viewer, without a browser or Ray."""

from __future__ import annotations

import pytest

from actors.agent import early_stop
from envpool.actions import parse_action
from webrl.evaluate import eval_specs, summarize
from webrl.trajectory_view import find_trajectory, print_trajectory
from actors.replay_buffer import ReplayBuffer
from webrl.types import (EpisodeStatus, EpisodeSummary, Observation, Outcome, Step, Task, Trajectory)

CLICK = 'do(action="Click", element="3")'


def _acts(*texts):
    return [parse_action(t) for t in texts]


def test_early_stop_after_consecutive_parse_failures_only():
    assert early_stop(_acts("hmm", "no", "what"), 3, 5).startswith("3 unparsable actions in a row")
    assert early_stop(_acts("hmm", CLICK, "no", "what"), 3, 5) is None  # not in a row
    assert early_stop(_acts("hmm", "no"), 3, 5) is None


def test_early_stop_after_the_same_action_repeated():
    other = 'do(action="Click", element="4")'
    assert "the same action 3 times" in early_stop(_acts(other, CLICK, CLICK, CLICK), 5, 3)
    assert early_stop(_acts(CLICK, other, CLICK), 5, 3) is None
    # the same text with different spacing is the same action
    assert early_stop(_acts(CLICK, 'do(action="Click",  element="3")', CLICK), 5, 3) is not None


def test_eval_specs_interleave_tasks_and_fix_ids_up_front():
    tasks = [Task(id=f"miniwob/t{i}", suite="miniwob", start_url="x") for i in range(2)]
    specs = eval_specs("run", tasks, 3, seed=10)
    assert [s.task_id for s in specs[:2]] == ["miniwob/t0", "miniwob/t1"]
    assert [s.seed for s in specs if s.task_id == "miniwob/t1"] == [10, 11, 12]
    assert len({s.id for s in specs}) == 6 and all(s.mode == "eval" for s in specs)


def test_summarize_counts_success_per_task_and_overall():
    rows = [EpisodeSummary(id=str(i), task_id=f"miniwob/t{i % 2}", reward=1.0 if i < 3 else 0.0, success=i < 3,
                           steps=2, reason=None if i < 3 else "5 unparsable actions in a row (last: x)",
                           status=EpisodeStatus.done) for i in range(6)]
    s = summarize(rows)
    assert s["success_rate"] == pytest.approx(0.5) and s["episodes"] == 6
    assert s["tasks"]["miniwob/t0"]["successes"] == 2 and s["tasks"]["miniwob/t1"]["successes"] == 1
    assert s["tasks"]["miniwob/t1"]["failures"] == {"5 unparsable actions in a row": 2}


def _traj(tid: str, success: bool) -> Trajectory:
    obs = Observation(url="http://127.0.0.1/x", html='<button id="3">OK</button>', element_count=1)
    step = Step(observation=obs, prompt_token_ids=[1, 2, 3], action_text=CLICK, action_token_ids=[5, 6],
                logprobs=[-0.1, -0.2], policy_version=2, action=parse_action(CLICK), reward=1.0 if success else 0.0)
    return Trajectory(id=tid, task_id="miniwob/click-button", suite="miniwob", seed=1, instruction="Click OK",
                      steps=[step], outcome=Outcome(reward=1.0 if success else 0.0, status=EpisodeStatus.done))


def test_find_trajectory_by_id_or_unique_prefix(tmp_path):
    with ReplayBuffer(tmp_path / "run-a") as buf:
        buf.add(_traj("eval-a-0001", True))
        buf.add(_traj("eval-a-0002", False))
    with ReplayBuffer(tmp_path / "run-b") as buf:
        buf.add(_traj("eval-b-0001", False))
    assert find_trajectory(tmp_path, "eval-a-0002").id == "eval-a-0002"
    assert find_trajectory(tmp_path, "eval-b").id == "eval-b-0001"
    with pytest.raises(KeyError, match="matches 2 trajectories"):
        find_trajectory(tmp_path, "eval-a")
    with pytest.raises(KeyError, match="no trajectory 'nope'"):
        find_trajectory(tmp_path, "nope")
    with pytest.raises(KeyError, match="run `webrl eval` first"):
        find_trajectory(tmp_path / "empty", "x")


def test_print_trajectory_reads_like_an_episode(tmp_path):
    from rich.console import Console

    console = Console(record=True, width=200)
    print_trajectory(_traj("t-1", True), console)
    text = console.export_text()
    for expected in ("instruction: Click OK", "step 1", '<button id="3">OK</button>', CLICK, "-> click element 3",
                     "success", "weights v2"):
        assert expected in text
