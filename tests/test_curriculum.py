"""The self-evolving curriculum: the task store (persistence, restart, dedup, lineage, outcomes per
phase, cap), the generator (the tiny model through our engine; a fake OpenAI-compatible endpoint on
127.0.0.1 served by a real http.server), answer parsing, and the filters (value window edges,
duplicates, infeasible entities on the sandbox's real data, cap); the API key never appears in logs
or in the store."""

from __future__ import annotations

import json
import logging

import pytest

from curriculum.evolve import evolve
from curriculum.filters import (FeasibilityChecker, apply_filters, cap, dedup, feasibility_from_config, load_rule,
                                value_filter)
from curriculum.generator import GeneratorError, make_generator, parse_tasks
from curriculum.sandbox_catalog import SandboxCatalog, sandbox_rules
from curriculum.task_store import FILENAME, TaskEntry, TaskStore, site_of
from tests.conftest import FakeChatServer
from webrl.config import load_config
from webrl.types import Task, TaskOrigin, Trajectory, Outcome

KEY = "sk-test-SECRET-0123456789"


def seed(name: str, instruction: str, site: str = "shop") -> Task:
    return Task(id=f"sandbox/{site}-{name}-0", suite="sandbox", instruction=instruction,
                start_url=f"__{site.upper()}__/", allowed_origins=[f"http://{site}.test"])


def generated(n: int, phase: int, parents: list[str], site: str = "shop", text: str | None = None) -> TaskEntry:
    task = Task(id=f"gen/{phase}/{n:04d}", suite="sandbox", instruction=text or f"generated task number {n}",
                start_url="__SHOP__/", origin=TaskOrigin(kind="generated", parent_ids=parents, phase=phase))
    return TaskEntry(task=task, site=site, generator="test")


SEEDS = [seed("price", "What is the price of the Hearthstone Everyday Electric Kettle?"),
         seed("cart", "Add 2 Summitcraft Sport Yoga Mat to my shopping cart."),
         seed("top", "What is the title of the highest-scoring post of all time in f/coffee?", site="forum")]


@pytest.fixture
def cur_cfg():
    return load_config("tiny")


@pytest.fixture(scope="module")
def catalog():
    return SandboxCatalog.from_config(load_config("tiny").env.sandbox)


# ---- the task store ------------------------------------------------------------------------------

def test_store_survives_restart_and_counts_nothing_twice(tmp_path):
    store = TaskStore(tmp_path, cap_per_phase=10)
    assert store.add_seeds(SEEDS) == 3
    assert store.add_seeds(SEEDS) == 0  # re-added: nothing written
    assert store.add_generated([generated(1, 1, [SEEDS[0].id])]) == {"added": 1, "duplicates": 0, "over_cap": 0}
    assert store.add_generated([generated(1, 1, [SEEDS[0].id])])["duplicates"] == 1
    assert store.record_outcome(SEEDS[0].id, 0, False, "traj-1")
    assert not store.record_outcome(SEEDS[0].id, 0, False, "traj-1")  # the same trajectory again
    trajs = [Trajectory(id="traj-2", task_id=SEEDS[1].id, suite="sandbox", phase=0, outcome=Outcome(reward=1.0)),
             Trajectory(id="traj-3", task_id=SEEDS[1].id, suite="sandbox", phase=0)]
    assert store.record_trajectories(trajs) == 2
    store.reject([generated(2, 1, [SEEDS[0].id]).model_copy(update={"filter": "value", "reason": "too easy"})])
    before = (store.summary(), store.outcomes(SEEDS[1].id), [t.id for t in store.tasks()])
    lines = store.path.read_text().count("\n")
    store.close()

    with open(tmp_path / FILENAME, "ab") as f:
        f.write(b'{"kind": "outcome", "outcome": {"trajectory_id": "torn"')  # a crash mid-write
    again = TaskStore(tmp_path, cap_per_phase=10)
    assert (again.summary(), again.outcomes(SEEDS[1].id), [t.id for t in again.tasks()]) == before
    assert again.path.read_text().count("\n") == lines and again.path.read_bytes().endswith(b"\n")  # torn tail cut
    assert again.add_seeds(SEEDS) == 0 and again.record_trajectories(trajs) == 0  # a replay after the crash
    assert again.outcomes(SEEDS[1].id) == {0: {"attempts": 2, "successes": 1}}
    assert again.entries(status="rejected")[0].reason == "too easy"
    again.close()


def test_store_queries_lineage_outcomes_and_failed_by_site(tmp_path):
    store = TaskStore(tmp_path)
    store.add_seeds(SEEDS)
    assert [site_of(t) for t in SEEDS] == ["shop", "shop", "forum"]
    child = generated(1, 1, [SEEDS[0].id, SEEDS[1].id])
    grandchild = generated(2, 2, [child.task.id])
    store.add_generated([child, grandchild, generated(3, 1, [SEEDS[2].id], site="forum")])
    assert store.lineage(grandchild.task.id) == [child.task.id, SEEDS[0].id, SEEDS[1].id]
    assert store.children(SEEDS[0].id) == [child.task.id]
    assert [t.id for t in store.tasks(origin="seed", site="shop")] == [SEEDS[0].id, SEEDS[1].id]
    assert [t.id for t in store.tasks(phase=1)] == ["gen/1/0001", "gen/1/0003"]
    assert [t.id for t in store.tasks(phase=1, site="forum")] == ["gen/1/0003"]
    assert store.tasks(status="rejected") == []
    with pytest.raises(KeyError, match="no task 'nope'"):
        store.get("nope")

    # phase 0: seed 0 always fails, seed 1 half the time, forum seed fails; phase 1: seed 0 succeeds
    for i, (task, ok, phase) in enumerate([(SEEDS[0], False, 0), (SEEDS[0], False, 0), (SEEDS[1], True, 0),
                                          (SEEDS[1], False, 0), (SEEDS[2], False, 0), (SEEDS[0], True, 1)]):
        store.record_outcome(task.id, phase, ok, f"t{i}")
    assert store.outcomes(SEEDS[0].id) == {0: {"attempts": 2, "successes": 0}, 1: {"attempts": 1, "successes": 1}}
    failed = store.failed(0)
    assert {site: [t.id for t in ts] for site, ts in failed.items()} == {"shop": [SEEDS[0].id], "forum": [SEEDS[2].id]}
    assert [t.id for t in store.failed(0, max_success_rate=0.5)["shop"]] == [SEEDS[0].id, SEEDS[1].id]
    assert store.failed(1) == {}
    assert store.record_outcome(SEEDS[0].id, 0, False, "e1", mode="eval") and store.outcomes(SEEDS[0].id, mode="eval") == {
        0: {"attempts": 1, "successes": 0}}
    store.close()


def test_store_caps_generated_tasks_per_phase(tmp_path):
    store = TaskStore(tmp_path, cap_per_phase=2)
    counts = store.add_generated([generated(i, 1, []) for i in range(3)] + [generated(9, 2, [])])
    assert counts == {"added": 3, "duplicates": 0, "over_cap": 1}
    assert store.room(1) == 0 and store.room(2) == 1
    (over,) = store.entries(status="rejected")
    assert over.filter == "cap" and "cap of 2" in over.reason
    assert store.summary(1)["rejected_by_filter"] == {"cap": 1}
    with pytest.raises(ValueError, match="not a generated task"):
        store.add_generated([TaskEntry(task=SEEDS[0], site="shop")])
    store.close()


# ---- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer,tasks,junk", [
    ("Sure! Here are tasks:\n1. Add 2 Summitcraft Sport Yoga Mat to my cart.\n2) **What is the price of a kettle?**\n"
     "- \"Find the top post in f/books\"\nsome chatter\n", 3, 2),
    ('```json\n["Buy a kettle now", {"instruction": "Cancel order #000000698"}, 3, null]\n```', 2, 2),
    ('{"tasks": [{"task": "Subscribe to f/books please"}]}', 1, 0),
    ("Add the kettle to my cart\nWhat is the newest post?\nHi:\nok", 2, 2),
    ("\x00\x01\xff {{{ [[[ ]]\n12 34 56\n", 0, 2),
    ("", 0, 0),
])
def test_parse_counts_what_it_cannot_read(answer, tasks, junk):
    parsed = parse_tasks(answer)
    assert (len(parsed.instructions), parsed.unparsable) == (tasks, junk)
    assert all(not t.startswith(("1.", "-", '"', "**")) for t in parsed.instructions)


# ---- filters -------------------------------------------------------------------------------------

def test_value_window_edges_and_heads():
    cands = [generated(i, 1, []) for i in range(7)]
    values = [0.05, 0.75, 0.0499, 0.7501, [0.9, 0.5], [0.9, 0.8], float("nan")]
    kept, rejected = value_filter(cands, values, 0.05, 0.75, heads="any")
    assert [c.task.id for c in kept] == [cands[i].task.id for i in (0, 1, 4)]
    reasons = {r.task.id: r.reason for r in rejected}
    assert "below 0.05" in reasons[cands[2].task.id] and "above 0.75" in reasons[cands[3].task.id]
    assert "no value" in reasons[cands[6].task.id] and all(r.filter == "value" for r in rejected)
    kept_min, _ = value_filter(cands[4:5] + [generated(8, 1, [])], [[0.9, 0.5], [0.9, 0.01]], 0.05, 0.75, heads="min")
    assert [c.task.id for c in kept_min] == [cands[4].task.id]  # min 0.5 in; min 0.01 out
    with pytest.raises(ValueError, match="one per task"):
        value_filter(cands, [0.5], 0.05, 0.75)


def test_dedup_exact_and_near_duplicates():
    existing = [TaskEntry(task=t, site=site_of(t)) for t in SEEDS]
    cands = [generated(1, 1, [], text="what is the PRICE of the hearthstone everyday electric kettle"),  # same, normalised
             generated(2, 1, [], text="What is the price of the Hearthstone Everyday Electric Kettle, please?"),  # near
             generated(3, 1, [], text="Show me the reviews of the Summitcraft Sport Yoga Mat."),
             generated(4, 1, [], text="Show me the reviews of the Summitcraft Sport Yoga Mat!"),  # dup of 3 in the batch
             generated(5, 1, [], site="forum", text="Add 2 Summitcraft Sport Yoga Mat to my shopping cart.")]  # other site
    kept, rejected = dedup(cands, existing, threshold=0.8)
    assert [c.task.id for c in kept] == ["gen/1/0003", "gen/1/0005"]
    reasons = [r.reason for r in rejected]
    assert reasons[0].startswith(f"duplicate of {SEEDS[0].id}") and reasons[1].startswith(f"near-duplicate of {SEEDS[0].id}")
    assert reasons[2].startswith("duplicate of gen/1/0003")


def test_feasibility_on_the_sandbox_data(catalog, cur_cfg, tmp_path, monkeypatch):
    checker = feasibility_from_config(cur_cfg.curriculum, sandbox_rules(catalog))
    order = sorted(catalog.customer_orders)[0]
    product = sorted(catalog.products)[0]
    feasible = [("shop", f"Add 3 {product} to my shopping cart."), ("shop", f"When was my order #{order} placed?"),
                ("admin", "Cancel order #000000698 with the comment 'Customer called'."),
                ("forum", "Subscribe to f/books and upvote its newest post."),
                ("shop", f"Find the cheapest {product.split()[0]} product in the shop.")]
    for site, text in feasible:
        assert checker.check(text, site) is None, text
    infeasible = {("shop", "Add 2 Hearthstone Turbo Jet Kettle to my cart."): "does not sell",
                  ("shop", "Check the status of my order #999999999."): "order #999999999",
                  ("admin", "Disable the product with SKU ZZ-0000 now."): "SKU ZZ-0000",
                  ("forum", "Post a comment in f/notaforum saying hello there."): "f/notaforum",
                  ("forum", "Send a message to user NoSuchPerson123 about books."): "NoSuchPerson123",
                  ("shop", "Buy it."): "fewer than",
                  ("shop", "Email the store owner about my kettle order."): "email",
                  ("shop", ""): "empty"}
    for (site, text), why in infeasible.items():
        reason = checker.check(text, site)
        assert reason is not None and why in reason, (text, reason)
    # a site's own rule, plugged in by config as 'module:callable'
    (tmp_path / "my_rules.py").write_text("def no_refunds(text):\n    return 'refunds are not possible' if 'refund' in text.lower() else None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cur = cur_cfg.curriculum.model_copy(update={"feasibility_rules": {"shop": ["my_rules:no_refunds"]}})
    plugged = feasibility_from_config(cur)
    assert plugged.check("Ask for a refund of my last order", "shop") == "refunds are not possible"
    assert plugged.check("Ask for a refund of my last order", "forum") is None
    with pytest.raises(ValueError, match="cannot be loaded"):
        load_rule("my_rules:missing")


def test_cap_takes_sites_in_turn_and_apply_filters_gives_every_rejection_a_reason(cur_cfg):
    cands = [generated(i, 1, [], site="shop") for i in range(4)] + [generated(10 + i, 1, [], site="forum") for i in range(2)]
    kept, rejected = cap(cands, 3, 500)
    assert [c.site for c in kept] == ["shop", "forum", "shop"] and len(rejected) == 3
    assert all(r.filter == "cap" and "cap of 500" in r.reason for r in rejected)

    cur = cur_cfg.curriculum
    cands = [generated(1, 1, [], text="Find the price of the Hearthstone Everyday Electric Kettle today"),
             generated(2, 1, [], text="Add 2 Summitcraft Sport Yoga Mat to my shopping cart."),  # duplicate of a seed
             generated(3, 1, [], text="Print the page"),  # infeasible
             generated(4, 1, [], text="Write a review of the yoga mat with five stars"),
             generated(5, 1, [], text="Show my wishlist and remove the first item from it")]
    seen = []

    def critic(tasks):
        seen.extend(t.id for t in tasks)
        return [{"gen/1/0001": 0.5, "gen/1/0004": [0.95, 0.9], "gen/1/0005": [0.2, 0.1]}[t.id] for t in tasks]

    result = apply_filters(cands, cur=cur, checker=feasibility_from_config(cur), value_fn=critic, room=1,
                           existing=[TaskEntry(task=t, site=site_of(t)) for t in SEEDS])
    assert seen == ["gen/1/0001", "gen/1/0004", "gen/1/0005"]  # the critic sees only what survived the cheap filters
    assert [c.task.id for c in result.kept] == ["gen/1/0001"]
    assert {r.task.id: r.filter for r in result.rejected} == {
        "gen/1/0002": "duplicate", "gen/1/0003": "feasibility", "gen/1/0004": "value", "gen/1/0005": "cap"}
    assert all(r.reason for r in result.rejected)
    assert result.counts() == {"kept": 1, "rejected": 4, "rejected_cap": 1, "rejected_duplicate": 1,
                               "rejected_feasibility": 1, "rejected_value": 1}


# ---- the generator through an OpenAI-compatible endpoint -----------------------------------------

ANSWER = """Here are 4 new tasks:
1. What is the price of the Hearthstone Everyday Electric Kettle?
2. Add 3 Summitcraft Sport Yoga Mat to my wishlist and then to my cart.
3. Add 2 Hearthstone Turbo Jet Kettle to my cart.
4. Show me the newest review of the Summitcraft Sport Yoga Mat.
I hope these help!"""


@pytest.fixture
def chat_server():
    server = FakeChatServer(ANSWER, KEY)
    yield server
    server.close()


def openai_cfg(url: str, **extra):
    return load_config("tiny", ["curriculum.generator=openai", f"curriculum.endpoint_url={url}", "curriculum.model=fake-llm",
                                "curriculum.api_key_env=WEBRL_TEST_LLM_KEY", "curriculum.tasks_per_prompt=4",
                                *[f"curriculum.{k}={v}" for k, v in extra.items()]])


def test_evolve_through_an_openai_endpoint_keeps_the_expected_tasks(chat_server, catalog, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WEBRL_TEST_LLM_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    cfg = openai_cfg(chat_server.url)
    store = TaskStore(tmp_path, cfg.curriculum.cap_per_phase)
    store.add_seeds(SEEDS)
    store.record_outcome(SEEDS[0].id, 0, False, "t0")
    store.record_outcome(SEEDS[1].id, 0, False, "t1")
    store.record_outcome(SEEDS[2].id, 0, True, "t2")

    def critic(tasks):  # the new wishlist task is too easy, the review one is in the window
        return [[0.9, 0.8] if "wishlist" in t.instruction else [0.8, 0.3] for t in tasks]

    summary = evolve(store, make_generator(cfg), feasibility_from_config(cfg.curriculum, sandbox_rules(catalog)),
                     cfg.curriculum, phase=1, value_fn=critic, entities={"shop": catalog.examples("shop", 3)})
    assert len(chat_server.requests) == 1  # one prompt: the two failed shop tasks; the forum task was solved
    (req,) = chat_server.requests
    assert req["path"] == "/v1/chat/completions" and req["auth"] == f"Bearer {KEY}" and req["body"]["model"] == "fake-llm"
    prompt = req["body"]["messages"][-1]["content"]
    assert SEEDS[0].instruction in prompt and SEEDS[1].instruction in prompt and "Write 4 new tasks" in prompt
    assert summary["parsed"] == 4 and summary["unparsable"] == 2 and summary["failed"] == {"shop": 2}
    assert summary["added"] == 1 and summary["rejected_duplicate"] == 1 and summary["rejected_feasibility"] == 1
    assert summary["rejected_value"] == 1

    (new,) = store.tasks(phase=1)
    assert new.instruction == "Show me the newest review of the Summitcraft Sport Yoga Mat."
    assert new.id.startswith("gen/1/") and new.evaluator is None and new.suite == "sandbox"
    assert new.start_url == "__SHOP__/" and new.allowed_origins == ["http://shop.test"]
    assert new.origin.parent_ids == [SEEDS[0].id, SEEDS[1].id] and store.entry(new.id).generator == "openai:fake-llm"
    assert store.lineage(new.id) == [SEEDS[0].id, SEEDS[1].id]
    reasons = {e.filter: e.reason for e in store.entries(status="rejected")}
    assert "Turbo Jet Kettle" in reasons["feasibility"] and "too easy" in reasons["value"]
    store.close()
    assert KEY not in caplog.text and KEY not in (tmp_path / FILENAME).read_text()
    assert summary["phase"] == 1 and TaskStore(tmp_path).summary(1)["kept"] == 1  # persisted


def test_openai_errors_are_clear_and_never_show_the_key(chat_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    failed = {"shop": SEEDS[:2]}
    cfg = openai_cfg(chat_server.url)
    monkeypatch.delenv("WEBRL_TEST_LLM_KEY", raising=False)
    with pytest.raises(GeneratorError, match=r"\$WEBRL_TEST_LLM_KEY, which is not set"):
        make_generator(cfg).generate(failed, 1)
    monkeypatch.setenv("WEBRL_TEST_LLM_KEY", KEY + "-wrong")
    with pytest.raises(GeneratorError, match="HTTP 401") as err:
        make_generator(cfg).generate(failed, 1)
    assert KEY not in str(err.value) and KEY not in caplog.text
    cfg = openai_cfg("http://127.0.0.1:9/v1", request_timeout_s=2)  # nothing listens on the discard port
    with pytest.raises(GeneratorError, match="cannot reach http://127.0.0.1:9/v1/chat/completions"):
        make_generator(cfg).generate(failed, 1)
    assert make_generator(cfg).generate({}, 1).stats["prompts"] == 0  # nothing failed: nothing asked


# ---- the generator through our own engine (the tiny random model) --------------------------------

def test_engine_generator_on_the_tiny_model_yields_parse_stats(tiny_model_dir, tmp_path):
    from actors.engine import make_engine

    cfg = load_config("tiny", ["curriculum.max_new_tokens=16", "curriculum.value_low=0", "curriculum.value_high=1"])
    engine = make_engine(cfg, tiny_model_dir, engine="transformers")
    try:
        generator = make_generator(cfg, engine=engine)
        store = TaskStore(tmp_path)
        store.add_seeds(SEEDS)
        store.record_outcome(SEEDS[2].id, 0, False, "t0")  # one failed task: one prompt (CPU time is scarce in CI)
        summary = evolve(store, generator, feasibility_from_config(cfg.curriculum), cfg.curriculum, phase=1,
                         value_fn=lambda tasks: [0.5] * len(tasks))
    finally:
        engine.close()
    # the random model writes junk: the prompt is answered, every line counted, nothing raised
    assert summary["prompts"] == summary["answered"] == 1 and summary["errors"] == []
    assert set(summary["sites"]) == {"forum"} and summary["sites"]["forum"]["prompts"] == 1
    assert summary["generator"] == f"engine:{cfg.rollout.model}"
    assert summary["kept"] + summary["rejected"] == summary["parsed"]
    assert len(store.tasks(phase=1)) == summary["added"] == summary["kept"]
    assert all(t.origin.parent_ids == [SEEDS[2].id] for t in store.tasks(phase=1))
    store.close()


def test_the_generator_engine_runs_as_an_actor_and_takes_the_policy_by_reference(tiny_model_dir):
    """`webrl train` runs curriculum.generator=engine in a Ray actor (curriculum.gpus, its placement), not in the
    driver: it answers chats like the local engine and loads the published weights from their object reference."""
    import ray
    from transformers import AutoModelForCausalLM

    from actors.services import RemoteEngineChat

    cfg = load_config("tiny", [f"rollout.model={tiny_model_dir}", "rollout.engine=transformers",
                               "curriculum.max_new_tokens=8", "curriculum.cpus=0.5"])
    ray.init(num_cpus=2, include_dashboard=False, namespace="test-generator-actor")
    try:
        chat = RemoteEngineChat(cfg)
        assert chat.name == f"engine:{tiny_model_dir}"
        answers = chat.complete([[{"role": "user", "content": "Write one task."}]] * 2)
        assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
        weights = ray.put(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict())
        assert chat.load_weights(weights, 3) == 3
        chat.close()
    finally:
        ray.shutdown()


def test_disabled_curriculum_generates_nothing(tmp_path):
    cfg = load_config("tiny", ["curriculum.enabled=false"])
    store = TaskStore(tmp_path)
    assert evolve(store, None, FeasibilityChecker(), cfg.curriculum, phase=1) == {"phase": 1, "enabled": False}
    store.close()
