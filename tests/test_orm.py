"""The outcome reward model: its prompt and budget, p_yes and the reward rule, which tasks it judges,
metrics hand-checked, and `webrl orm train` + `webrl orm eval` on a separable toy set (successes end on
a page saying "Order placed", failures on the cart) where it goes from chance to >= 0.9 on held-out tasks."""

from __future__ import annotations

import json
import random

import pytest
import torch

from envpool.actions import parse_action
from reward.orm import (OutcomeRewardModel, answer_token_ids, judge_trajectory, needs_orm, orm_outcome, orm_reward,
                        p_yes_of)
from reward.orm_data import OrmDataError, binary_metrics, load_trajectories, split_by_task
from reward.orm_prompt import orm_prompt
from webrl.config import load_config
from webrl.types import Observation, Outcome, OutcomeSource, Step, Task, TaskOrigin, Trajectory

PRODUCTS = ["red kettle", "blue lamp", "oak desk", "wool scarf", "steel pan", "linen shirt", "green mug", "desk fan"]
ACTIONS = ['do(action="Search", argument="{p}", element="3")', 'do(action="Click", element="7")',
           'do(action="Click", element="12")', 'do(action="Scroll Down")', 'do(action="Click", element="2")']


def _page(url: str, body: str) -> Observation:
    return Observation(url=url, html=f'<header><a id="0">Shop</a><input id="3" placeholder="Search"/></header>'
                                     f"<main>{body}</main>", element_count=4)


def _product_page(product: str) -> Observation:
    return _page("http://127.0.0.1:8000/product/1", f'<h1>{product}</h1><p>$19.99</p><button id="7">Add to cart</button>')


def make_traj(task: int, n: int, success: bool, *, source: OutcomeSource = OutcomeSource.rule, steps: int = 3,
              seed: int = 0) -> Trajectory:
    rng = random.Random(f"{task}-{n}-{seed}")
    product = PRODUCTS[task % len(PRODUCTS)]
    texts = [rng.choice(ACTIONS).format(p=product) for _ in range(steps)]
    final = (_page("http://127.0.0.1:8000/checkout/done", f"<h1>Order placed</h1><p>Order placed: 1 x {product}. "
                   'Thank you!</p><a id="12">Continue shopping</a>') if success else
             _page("http://127.0.0.1:8000/cart", f'<h1>Cart</h1><p>1 x {product}</p><button id="12">Checkout</button>'))
    return Trajectory(
        id=f"t{task}-{n}-{seed}", task_id=f"sandbox/buy-{task}", suite="sandbox", instruction=f"Buy one {product}.",
        steps=[Step(observation=_product_page(product), prompt_token_ids=[1], action_text=t, action_token_ids=[2],
                    logprobs=[-0.5], policy_version=0, action=parse_action(t)) for t in texts],
        final_observation=final, answer=None,
        outcome=Outcome(reward=1.0 if success else 0.0, source=source))


def toy_set(tasks: int = 20, per_task: int = 2) -> list[Trajectory]:
    """Each task has successes and failures, so a task's id tells nothing: only the final page does."""
    return [make_traj(t, n, success=n % 2 == 0) for t in range(tasks) for n in range(per_task)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is as fast, and a second one only spins on a machine whose cores are busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_jsonl(path, trajs) -> None:
    path.write_text("".join(t.model_dump_json() + "\n" for t in trajs))


# ---- prompt -------------------------------------------------------------------------------------
def test_prompt_holds_instruction_actions_answer_and_page_and_ends_where_the_verdict_goes(tokenizer):
    traj = make_traj(1, 0, success=True)
    traj.answer = "bought it"
    prompt = orm_prompt(tokenizer, traj, 4096)
    text = prompt.text
    assert "Task Instruction: Buy one blue lamp." in text
    assert all(f"{i + 1}. {s.action_text}" in text for i, s in enumerate(traj.steps))
    assert "Final answer: bought it" in text and traj.final_observation.html in text
    assert "http://127.0.0.1:8000/checkout/done" in text and "Answer YES or NO" in text
    assert text.endswith("<|im_start|>assistant\n")  # the next token is the verdict
    assert prompt.token_ids == tokenizer(text, add_special_tokens=False).input_ids
    assert prompt.dropped_rounds == 0 and not prompt.page_truncated


def test_budget_keeps_the_end_of_the_history_then_the_start_of_the_page(tokenizer):
    traj = make_traj(2, 0, success=False, steps=40)
    for i, s in enumerate(traj.steps):
        s.action_text = f'do(action="Click", element="{100 + i}")'
    full = orm_prompt(tokenizer, traj, 100_000)
    budget = full.token_count - 150
    cut = orm_prompt(tokenizer, traj, budget)
    assert cut.token_count <= budget and 0 < cut.dropped_rounds < 40 and not cut.page_truncated
    assert 'element="139"' in cut.text and 'element="100"' not in cut.text  # the newest actions stay
    assert f"({cut.dropped_rounds} earlier actions are left out.)" in cut.text
    assert traj.final_observation.html in cut.text

    traj.final_observation.html = "<main>" + " ".join(f"<p>line {i}</p>" for i in range(400)) + "</main>"
    tight = orm_prompt(tokenizer, traj, 300)
    assert tight.token_count <= 300 and tight.page_truncated and tight.dropped_rounds == 40
    assert "<p>line 0</p>" in tight.text and "<p>line 399</p>" not in tight.text  # the page's start stays
    with pytest.raises(ValueError, match="raise orm.budget_tokens"):
        orm_prompt(tokenizer, traj, 40)


# ---- scoring and the reward rule ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_orm(tiny_model_dir):
    cfg = load_config("tiny", ["orm.micro_batch=3"])
    return OutcomeRewardModel.load(cfg, tiny_model_dir, device="cpu")


def test_p_yes_is_a_probability_and_padding_does_not_change_it(tiny_orm):
    trajs = [make_traj(t, 0, success=True, steps=1 + t) for t in range(5)]  # different lengths: padded batches
    together = tiny_orm.p_yes(trajs)
    alone = [tiny_orm.p_yes([t])[0] for t in trajs]
    assert all(0.0 < p < 1.0 for p in together)
    assert together == pytest.approx(alone, abs=1e-5)
    # by hand: the two answer logits at the prompt's last token
    ids = torch.tensor([tiny_orm.prompt(trajs[0]).token_ids])
    with torch.no_grad():
        logits = tiny_orm.model(ids).logits[0, -1]
    no_id, yes_id = tiny_orm.answer_ids
    want = torch.softmax(logits[[no_id, yes_id]], -1)[1].item()
    assert together[0] == pytest.approx(want, abs=1e-5)


def test_the_orm_actor_of_webrl_train_scores_as_the_model_does(tiny_orm, tiny_model_dir):
    """`webrl train` runs the ORM as a Ray actor (orm.gpus, ray.placement.orm: an 8B judge on a GPU node, not in
    the driver); its scores are the model's, in order, and it comes back if its process dies."""
    import os
    import signal

    import ray

    from actors.services import RemoteORM

    trajs = [make_traj(t, 0, success=True, steps=1 + t) for t in range(3)]
    ray.init(num_cpus=2, include_dashboard=False, namespace="test-orm-actor")
    try:
        orm = RemoteORM(load_config("tiny", [f"rollout.model={tiny_model_dir}", "orm.micro_batch=3", "orm.cpus=0.5"]))
        assert orm.p_yes(trajs) == pytest.approx(tiny_orm.p_yes(trajs), abs=1e-5)
        assert orm.p_yes([]) == []
        os.kill(ray.get(orm.handle.__ray_call__.remote(lambda actor: os.getpid())), signal.SIGKILL)
        assert orm.p_yes(trajs[:1]) == pytest.approx(tiny_orm.p_yes(trajs[:1]), abs=1e-5)  # restarted, same answer
        orm.close()
    finally:
        ray.shutdown()


def test_reward_is_one_exactly_when_p_yes_is_at_least_one_half():
    assert p_yes_of(torch.tensor([[2.5, 2.5]])).item() == 0.5  # P(YES) == P(NO)
    assert orm_reward(0.5) == 1.0 and orm_reward(0.5 - 1e-9) == 0.0 and orm_reward(0.999) == 1.0
    out = orm_outcome(0.5, Outcome(reward=0.0, source=OutcomeSource.none, reason="the agent exited"))
    assert (out.reward, out.source, out.p_yes, out.reason) == (1.0, OutcomeSource.orm, 0.5, "the agent exited")
    assert orm_outcome(0.4999, Outcome()).reward == 0.0


def test_answer_words_must_start_with_different_tokens(tokenizer):
    no_id, yes_id = answer_token_ids(tokenizer, "YES", "NO")
    assert no_id != yes_id and tokenizer.decode([no_id]) == "NO"
    with pytest.raises(ValueError, match="same token"):
        answer_token_ids(tokenizer, "Yes indeed", "Yes no")


def test_which_episodes_the_orm_judges(tiny_orm):
    seed_task = Task(id="sandbox/buy-1", suite="sandbox", start_url="http://x/", evaluator={"eval_types": ["string_match"]})
    generated = Task(id="sandbox/gen-1", suite="sandbox", start_url="http://x/", origin=TaskOrigin(kind="generated"))
    ruled = Outcome(reward=1.0, source=OutcomeSource.rule, checks=["answer matches"])
    unjudged = Outcome(source=OutcomeSource.none, reason="timeout")
    for use in ("rule", "orm", "rule_else_orm"):
        assert needs_orm(generated, Outcome(source=OutcomeSource.page), use)  # no checker: always the ORM
    assert not needs_orm(seed_task, ruled, "rule") and not needs_orm(seed_task, ruled, "rule_else_orm")
    assert needs_orm(seed_task, ruled, "orm")
    assert needs_orm(seed_task, unjudged, "rule_else_orm") and not needs_orm(seed_task, unjudged, "rule")

    traj = make_traj(1, 0, success=True)
    assert judge_trajectory(tiny_orm, traj, seed_task, use="rule") is traj  # left as the rule judged it
    judged = judge_trajectory(tiny_orm, traj, seed_task, use="orm")
    assert judged.outcome.source is OutcomeSource.orm and 0 < judged.outcome.p_yes < 1
    assert judged.outcome.reward == orm_reward(judged.outcome.p_yes)
    assert judged.outcome.checks[-1] == "rule reward 1 (replaced by the ORM's)"
    assert traj.outcome.source is OutcomeSource.rule  # the input is not changed
    batch = tiny_orm.judge([traj, traj.model_copy(update={"id": "g"})], [seed_task, generated], use="rule")
    assert batch[0] is traj and batch[1].outcome.source is OutcomeSource.orm


# ---- data and metrics ---------------------------------------------------------------------------
def test_metrics_on_a_fixed_confusion_matrix():
    labels = [True] * 5 + [False] * 5
    preds = [True, True, True, False, False] + [True, False, False, False, False]  # tp 3, fn 2, fp 1, tn 4
    m = binary_metrics(labels, preds)
    assert (m["tp"], m["fn"], m["fp"], m["tn"], m["n"], m["positives"], m["negatives"]) == (3, 2, 1, 4, 10, 5, 5)
    assert m["accuracy"] == pytest.approx(0.7) and m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.6) and m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    none_yes = binary_metrics([True, False], [False, False])
    assert none_yes["precision"] is None and none_yes["recall"] == 0.0 and none_yes["f1"] is None
    assert none_yes["accuracy"] == 0.5


def test_held_out_split_is_by_task():
    trajs = toy_set(tasks=10, per_task=3)
    train, held = split_by_task(trajs, 0.2, seed=1)
    assert {t.task_id for t in train}.isdisjoint({t.task_id for t in held})
    assert len({t.task_id for t in held}) == 2 and len(train) + len(held) == 30
    assert split_by_task(trajs, 0.2, seed=1) == (train, held)  # the same seed, the same split
    with pytest.raises(OrmDataError, match="at least two tasks"):
        split_by_task([make_traj(0, n, n % 2 == 0) for n in range(4)], 0.2)


def test_bad_data_says_what_is_wrong(tmp_path, capsys):
    from webrl.cli import main

    def printed() -> str:  # rich wraps long lines
        return " ".join(capsys.readouterr().out.split())

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["orm", "train", "--data", str(empty), "--config", "tiny"]) == 2
    assert "empty.jsonl holds no trajectories" in printed()
    failures = tmp_path / "failures.jsonl"
    write_jsonl(failures, [make_traj(t, 0, success=False) for t in range(4)])
    assert main(["orm", "train", "--data", str(failures), "--config", "tiny"]) == 2
    assert "all 4 labelled trajectories in " in (text := printed()) and "are failures: the ORM needs both" in text
    unlabelled = tmp_path / "orm.jsonl"
    write_jsonl(unlabelled, [make_traj(0, 0, True, source=OutcomeSource.orm)])
    assert main(["orm", "train", "--data", str(unlabelled), "--config", "tiny"]) == 2
    assert "none of the 1 trajectories" in (text := printed()) and "is labelled by a rule evaluator" in text
    junk = tmp_path / "junk.jsonl"
    junk.write_text(make_traj(0, 0, True).model_dump_json() + '\n{"hello": 1}\n')
    with pytest.raises(OrmDataError, match="junk.jsonl:2 is not a trajectory"):
        load_trajectories([junk])
    assert main(["orm", "eval", "--data", str(tmp_path / "missing.jsonl"), "--config", "tiny"]) == 2
    assert "no trajectories at" in printed()


# ---- training and evaluation through the CLI ---------------------------------------------------
@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """`webrl orm train` on the toy set (plus unlabelled trajectories it must skip) from the tiny random model."""
    from webrl.cli import main

    folder = tmp_path_factory.mktemp("orm")
    data = folder / "data"
    data.mkdir()
    write_jsonl(data / "trajectories.jsonl", toy_set(tasks=25))
    write_jsonl(data / "unlabelled.jsonl", [make_traj(99, n, True, source=OutcomeSource.none) for n in range(3)])
    out = folder / "ckpt"
    rc = main(["orm", "train", "--data", str(data), "--model", str(tiny_model_dir), "--out", str(out), "--epochs", "4",
               "--config", "tiny", "--set", "orm.lr=0.003", "--set", "orm.batch_size=8", "--set", "orm.micro_batch=8"])
    assert rc == 0
    return data, out, json.loads((out / "manifest.json").read_text())


def test_training_lifts_held_out_accuracy_from_chance(trained):
    _, out, manifest = trained
    m = manifest["metrics"]
    assert m["held_out_before"]["accuracy"] <= 0.7  # a random model: about chance
    assert m["held_out"]["accuracy"] >= 0.9, m
    assert m["held_out"]["mean_p_yes_success"] > 0.5 > m["held_out"]["mean_p_yes_failure"]
    counts = manifest["counts"]
    assert counts["held_out"]["tasks"] == 5 and counts["train"]["tasks"] == 20 and counts["skipped_unlabelled"] == 3
    assert set(manifest["train_tasks"]).isdisjoint(manifest["held_out_tasks"])
    assert manifest["kind"] == "orm" and manifest["steps"] == 4 * 5 and len(m["per_epoch"]) == 4
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()


def test_eval_reports_metrics_on_held_out_tasks_only(trained, tmp_path, capsys):
    from webrl.cli import main

    data, out, manifest = trained
    capsys.readouterr()
    report_path = tmp_path / "report.json"
    assert main(["orm", "eval", "--data", str(data), "--model", str(out), "--report", str(report_path),
                 "--config", "tiny"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = json.loads(report_path.read_text())
    assert printed == report
    assert report["n"] == manifest["counts"]["held_out"]["trajectories"] == 10
    assert report["skipped_train_tasks"] == 40 and report["skipped_unlabelled"] == 3
    assert report["accuracy"] == pytest.approx(manifest["metrics"]["held_out"]["accuracy"])
    assert report["tp"] + report["fn"] == 5 and report["tp"] + report["fp"] + report["tn"] + report["fn"] == 10
    # the checkpoint is an ORM config can point at: it judges a new episode of a held-out task
    orm = OutcomeRewardModel.load(load_config("tiny", [f"orm.model={out}"]), device="cpu")
    task = sorted(manifest["held_out_tasks"])[0]
    index = int(task.rsplit("-", 1)[1])
    good, bad = make_traj(index, 7, True, seed=5), make_traj(index, 8, False, seed=5)
    p_good, p_bad = orm.p_yes([good, bad])
    assert p_good > 0.5 > p_bad
