"""The sandbox seed tasks (envpool/sandbox/tasks/*.jsonl, made by envpool/sandbox/task_gen.py): the files
load and meet the bar (ids, counts, kinds, splits, oracle lengths), the generator reproduces them,
plan steps resolve to element ids, oracles replay through the real browser to reward 1 (a sample
here, all of them under `slow`), a wrong answer or a skipped step scores 0, broken task files and
unknown ids are refused clearly, `webrl env play ... --oracle` works, and oracle replays are
demonstrations `webrl sft` reads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from envpool.actions import format_action, parse_action
from envpool.sandbox import task_gen
from envpool.sandbox.oracle import NoOracle, oracle_of, replay, replay_oracles, save_demos
from envpool.sandbox.task_plan import PlanError, Target, click, resolve, select, type_
from envpool.sandbox.task_specs import TASKS_DIR, TaskFileError, load_task_specs
from envpool.sandbox.task_templates import SLOT
from envpool.suites import Suites, UnknownTask
from reward.rule_config import parse_eval_config
from webrl.cli import main
from webrl.types import ActionKind, EpisodeStatus

REPO = Path(__file__).resolve().parents[1]
SPECS = load_task_specs(TASKS_DIR, check_eval=parse_eval_config)
BY_ID = {s.task_id: s for s in SPECS}
# a task of each kind (information-seeking, state-changing, navigation) on each site, short and long: replayed in CI
SAMPLE = ["sandbox/shop-product-price-0", "sandbox/shop-checkout-address-0", "sandbox/admin-order-cancel-0",
          "sandbox/forum-top-post-0", "sandbox/forum-sorted-forum-0"]


def extra(spec, key):
    return (spec.model_extra or {})[key]


def play(cfg, coro_fn):
    """Run ``coro_fn(pool)`` in a fresh BrowserPool on the tiny config (room for the longest oracle)."""
    from envpool.pool import BrowserPool

    cfg.env.max_steps = task_gen.MAX_STEPS + 1

    async def go():
        async with BrowserPool(cfg.env) as pool:
            return await coro_fn(pool)

    return asyncio.run(go())


# ---- the task files, without a browser ----------------------------------------------------------------
def test_task_files_load_and_meet_the_bar():
    templates = Counter(extra(s, "template") for s in SPECS)
    sites = {site: {t for t in templates if t.startswith(site)} for site in ("shop", "admin", "forum")}
    assert len(SPECS) >= 150 and len(templates) >= 40, (len(SPECS), len(templates))
    assert all(len(ts) >= 12 for ts in sites.values()), {k: len(v) for k, v in sites.items()}
    kinds = Counter(extra(s, "task_kind") for s in SPECS)
    assert kinds["information-seeking"] >= 50 and kinds["state-changing"] >= 50, kinds
    for s in SPECS:
        assert s.task_id.startswith(f"sandbox/{extra(s, 'template')}-") and s.sites == [extra(s, "template").split("-")[0]]
        assert 1 <= len(s.oracle) <= task_gen.MAX_STEPS, s.task_id
        actions = [parse_action(a) for a in s.oracle]
        assert all(a.kind is not ActionKind.invalid for a in actions), s.task_id
        assert [format_action(a) for a in actions] == s.oracle  # stored in the canonical form
        assert actions[-1].kind is ActionKind.exit and all(a.kind is not ActionKind.exit for a in actions[:-1])
        types = s.eval["eval_types"]
        if extra(s, "task_kind") == "information-seeking":
            assert types == ["string_match"], s.task_id
        elif extra(s, "task_kind") == "state-changing":
            assert "state_check" in types and extra(s, "require_reset"), s.task_id
        else:
            assert types == ["url_match"], s.task_id
        assert s.intent == SLOT.sub(lambda m: str(extra(s, "instantiation_dict")[m.group(1)]),
                                             extra(s, "intent_template"))
    lengths = Counter(len(s.oracle) for s in SPECS)
    assert min(lengths) == 1 and max(lengths) >= 10, lengths


def test_splits_are_fixed_and_disjoint():
    by_split = {name: {s.task_id for s in SPECS if s.split == name} for name in ("train", "test")}
    assert by_split["train"].isdisjoint(by_split["test"]) and all(by_split.values())
    assert 0.15 <= len(by_split["test"]) / len(SPECS) <= 0.4
    templates = {t.id: t for t in task_gen.all_templates()}
    for s in SPECS:  # the rule, not chance: held-out templates are all test, the rest by a hash of the id
        assert s.split == task_gen.split_of(templates[extra(s, "template")], s.task_id)
    held_out = {t for t, tpl in templates.items() if tpl.held_out}
    assert len(held_out) >= 6 and all(s.split == "test" for s in SPECS if extra(s, "template") in held_out)
    suite = Suites(task_gen.EnvConfig()).by_name["sandbox"]
    assert {t.id for t in suite.split("test")} == by_split["test"]


def test_generator_reproduces_the_committed_files():
    found = task_gen.instances(task_gen.SiteData(task_gen.EnvConfig().sandbox))
    committed = task_gen.committed()
    without_oracles = [{k: v for k, v in s.items() if k != "oracle"} for s in committed]
    assert task_gen.differences([i.spec() for i in found], without_oracles) == []
    plans = {i.task_id: i.draft.plan for i in found}
    assert all(len(plans[s["task_id"]]) == len(s["oracle"]) for s in committed)
    assert list(task_gen.render(committed).values()) == [(TASKS_DIR / f"{site}.jsonl").read_text()
                                                          for site in ("shop", "admin", "forum")]


PAGE = ('<a id="0" href="/">Home</a> <a id="1" href="/cart">My Cart (3)</a> <table><tr><td><a id="2" href="/product/A-1">'
        'Kettle</a></td><td><input id="3" name="qty" value="1"></input><button id="4">Update</button></td></tr><tr><td>'
        '<a id="5" href="/product/B-2">Mug</a></td><td><input id="6" name="qty" value="2"></input><button id="7">Update'
        '</button></td></tr></table><input id="8" type="radio" name="ship"></input><input id="9" type="radio" name="ship">'
        '</input><select id="10" name="sort"><option>Name</option></select>')


def test_plan_steps_resolve_to_the_ids_of_the_page():
    assert resolve(click(href="/cart"), PAGE) == 'do(action="Click", element="1")'
    assert resolve(type_("4", name="qty", after=Target(href="/product/B-2")), PAGE) == \
        'do(action="Type", argument="4", element="6")'
    assert resolve(click(text="Update", after=Target(href="/product/A-1")), PAGE) == 'do(action="Click", element="4")'
    assert resolve(click(name="ship", nth=1), PAGE) == 'do(action="Click", element="9")'
    assert resolve(select("Name", name="sort"), PAGE) == 'do(action="Select Dropdown Option", argument="Name", element="10")'
    with pytest.raises(PlanError, match=r"2 elements match <text='Update'>.*narrow it"):
        resolve(click(text="Update"), PAGE)
    with pytest.raises(PlanError, match=r"step click <href='/wishlist'>: no element matches"):
        resolve(click(href="/wishlist"), PAGE)


def test_broken_task_file_is_refused_at_start_up_naming_file_and_line(cfg, tmp_path, capsys):
    lines = (TASKS_DIR / "admin.jsonl").read_text().splitlines()
    broken = json.loads(lines[2])
    broken["eval"]["eval_types"] = ["string_match", "smell_check"]
    (tmp_path / "admin.jsonl").write_text("\n".join([lines[0], lines[1], json.dumps(broken)]) + "\n")
    cfg.env.sandbox.tasks_dir = str(tmp_path)
    with pytest.raises(TaskFileError, match=rf"task file {tmp_path / 'admin.jsonl'}, line 3: .*unknown eval type 'smell_check'"):
        Suites(cfg.env).all_tasks()
    (tmp_path / "admin.jsonl").write_text(lines[1] + "\n" + lines[1][:-5] + "\n")
    with pytest.raises(TaskFileError, match=r"admin.jsonl, line 2: not valid JSON"):
        Suites(cfg.env).all_tasks()
    from webrl.cli import main  # the CLI says the same, without a traceback

    assert main(["env", "list", "--set", f"env.sandbox.tasks_dir={tmp_path}"]) == 2
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "data error" in out and "line 2" in out and "Traceback" not in out


def test_unknown_task_and_missing_oracle_are_clear_errors(cfg, capsys):
    suites = Suites(cfg.env)
    with pytest.raises(UnknownTask, match="did you mean sandbox/shop-cart-add-0"):
        oracle_of(suites, "sandbox/shop-cart-ad-0")
    with pytest.raises(NoOracle, match="miniwob/click-button has no oracle"):
        oracle_of(suites, "miniwob/click-button")
    assert main(["env", "play", "sandbox/shop-cart-ad-0", "--oracle", "--config", "tiny"]) == 2
    assert "did you mean sandbox/shop-cart-add-0" in capsys.readouterr().out
    assert main(["env", "play", "miniwob/click-button", "--oracle", "--config", "tiny"]) == 2
    assert "has no oracle" in capsys.readouterr().out
    assert oracle_of(suites, "sandbox/shop-cart-add-0") == BY_ID["sandbox/shop-cart-add-0"].oracle


def test_demonstrations_leave_the_test_split_out_unless_allowed(cfg):
    from envpool.demo import DemoRefused, _oracle_jobs

    saved = _oracle_jobs(cfg, "sandbox", None, None, save=True, allow_heldout=False)
    assert [task_id for task_id, *_ in saved] == [s.task_id for s in SPECS if s.split == "train"]
    assert all(oracle == BY_ID[task_id].oracle for task_id, _, oracle in saved)
    assert BY_ID["sandbox/shop-cart-add-0"].split == "test"
    with pytest.raises(DemoRefused, match="sandbox/shop-cart-add-0 in the test split of sandbox"):
        _oracle_jobs(cfg, "sandbox", ["shop-cart-add-0"], None, save=True, allow_heldout=False)
    assert len(_oracle_jobs(cfg, "sandbox", ["shop-cart-add-0"], None, save=True, allow_heldout=True)) == 1
    assert len(_oracle_jobs(cfg, "sandbox", None, None, save=False, allow_heldout=False)) == len(SPECS)


# ---- through the real browser -----------------------------------------------------------------------------
@pytest.mark.browser
def test_a_sample_of_oracles_reaches_reward_one_and_makes_demonstrations(cfg, tmp_path):
    from learner.sft import load_demos

    records = play(cfg, lambda pool: replay_oracles(pool, SAMPLE))
    for rec in records:
        assert (rec.status, rec.reward, rec.reward_source.value) == (EpisodeStatus.done, 1.0, "rule"), \
            (rec.task_id, rec.reason, rec.reward_checks)
        assert len(rec.steps) == len(BY_ID[rec.task_id].oracle) and all(c.startswith("[pass]") for c in rec.reward_checks)
    # the replays are demonstrations for `webrl sft`: each page and the oracle's action taken on it
    demos = load_demos([save_demos(records, tmp_path / "demos").parent])
    assert [d.task_id for d in demos] == SAMPLE
    for demo in demos:
        spec = BY_ID[demo.task_id]
        assert demo.instruction == spec.intent and [action for _, action in demo.rounds] == spec.oracle
        assert all(obs.html and obs.url.startswith("http://127.0.0.1") for obs, _ in demo.rounds)


@pytest.mark.browser
def test_the_generator_resolves_the_committed_oracles(cfg):
    """The browser stage of the generator, on two tasks: the same plans give the same literal actions."""
    ids = ["sandbox/shop-cart-update-1", "sandbox/forum-vote-0"]
    picked = [i for i in task_gen.instances(task_gen.SiteData(cfg.env.sandbox)) if i.task_id in ids]
    assert asyncio.run(task_gen.record_oracles(picked, cfg.env)) == {t: BY_ID[t].oracle for t in ids}


@pytest.mark.browser
def test_a_wrong_answer_or_a_skipped_step_scores_zero(cfg):
    info, change, nav = (BY_ID[t].oracle for t in ("sandbox/shop-product-price-0", "sandbox/shop-cart-add-0",
                                                     "sandbox/shop-sorted-category-0"))
    runs = {
        "sandbox/shop-product-price-0": info[:-1] + ['exit(message="$12.34")'],  # the wrong price
        "sandbox/shop-cart-add-0": change[:-2] + change[-1:],  # the "Add to Cart" click left out
        "sandbox/shop-sorted-category-0": nav[:-2] + nav[-1:],  # the sort chosen, never applied
    }

    async def go(pool):
        return [await replay(pool, task_id, actions) for task_id, actions in runs.items()]

    for rec in play(cfg, go):
        assert rec.status is EpisodeStatus.done and rec.reward == 0.0, (rec.task_id, rec.reward_checks)
        assert any(c.startswith("[FAIL]") for c in rec.reward_checks), rec.reward_checks


@pytest.mark.browser
def test_env_play_oracle_prints_each_page_and_the_reward(capsys):
    assert main(["env", "play", "sandbox/admin-order-cancel-0", "--oracle", "--config", "tiny"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "instruction: Cancel order #000000698 with the comment 'Customer called to cancel'." in out
    steps = len(BY_ID["sandbox/admin-order-cancel-0"].oracle)
    assert out.count("reward: ") == steps and 'exit(message="Done")' in out and "Submit Status and Comment" in out
    assert f"episode: done after {steps} steps, reward 1.0" in out and out.count("[pass] state_check") == 2


# ---- all of them -----------------------------------------------------------------------------------------
@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~200 episodes: 3-4 min on two idle cores, far longer on a loaded machine
def test_every_oracle_reaches_reward_one(cfg):
    cfg.env.browser.contexts = 3
    cfg.env.browser.action_timeout_s = 30  # a loaded machine must not fail an oracle by a slow step
    records = play(cfg, lambda pool: replay_oracles(pool, [s.task_id for s in SPECS], concurrency=3))
    failed = [(r.task_id, r.status.value, r.reward, r.reason, r.reward_checks) for r in records
              if r.status is not EpisodeStatus.done or r.reward != 1.0]
    assert not failed, failed
    assert all(len(r.steps) == len(BY_ID[r.task_id].oracle) for r in records)


@pytest.mark.browser
@pytest.mark.slow
def test_env_demo_sandbox_saves_demonstrations(tmp_path):
    from learner.sft import load_demos

    proc = subprocess.run([sys.executable, "-m", "webrl.cli", "env", "demo", "--suite", "sandbox", "--tasks",
                           "shop-cart-add-1,forum-comment-1", "--config", "tiny", "--save", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    demos = load_demos([tmp_path])
    assert sorted(d.task_id for d in demos) == ["sandbox/forum-comment-1", "sandbox/shop-cart-add-1"]
    assert all([a for _, a in d.rounds] == BY_ID[d.task_id].oracle for d in demos)
