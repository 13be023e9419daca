"""Scripted MiniWoB++ demonstrators and the fixed train / held-out split.

The browser tests run every scripted policy through a real BrowserPool (Chromium, the task pages on
127.0.0.1) and need reward 1 from the page itself; the rest check the policies' reasoning on
hand-written observations, and that the split is complete, disjoint and fixed.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from envpool.demo import DemoRefused, scripted_tasks
from envpool.pool import BrowserPool
from envpool.suites import Suites, UnknownTask
from envpool.suites.miniwob import miniwob_html_dir
from envpool.suites.miniwob_scripts import POLICIES, PolicyStuck, View, scripted_action
from envpool.suites.miniwob_split import HELDOUT, SPLITS, TRAIN, fingerprint, is_heldout, split_of
from tests.conftest import run
from webrl.config import load_config
from webrl.types import EpisodeStatus

CONTEXTS = 4
REPO = Path(__file__).resolve().parents[1]


def _pool_config():
    # typing is key by key: a loaded CI machine needs more than tiny's 5 s per action
    return load_config("tiny", [f"env.browser.contexts={CONTEXTS}", "env.browser.action_timeout_s=20",
                                "env.browser.episode_timeout_s=120", "env.max_steps=30"])


async def _play(pool: BrowserPool, task_id: str, seed: int, max_steps: int):
    """One scripted episode; returns (record, why the policy gave up or None)."""
    rec = await pool.reset(task_id, seed)
    obs, history, stuck = rec.first_observation, [], None
    for _ in range(max_steps):
        try:
            history.append(scripted_action(task_id, rec.instruction, obs.html, history))
        except PolicyStuck as e:
            stuck = str(e)
            break
        step = await pool.step(rec.episode_id, history[-1])
        obs = step.observation
        if step.done:
            break
    return await pool.close(rec.episode_id), stuck


def _play_all(names, seeds):
    cfg = _pool_config()

    async def main():
        gate = asyncio.Semaphore(CONTEXTS)  # no episode waits for a context: none can time out waiting

        async def one(name, seed):
            async with gate:
                return await _play(pool, f"miniwob/{name}", seed, cfg.env.max_steps)

        async with BrowserPool(cfg.env) as pool:
            return await asyncio.gather(*(one(n, s) for n in names for s in seeds))

    return run(main())


def _failures(results):
    return [(r.task_id, r.seed, r.status.value, r.reason, stuck) for r, stuck in results
            if r.reward != 1.0 or r.status is not EpisodeStatus.done]


@pytest.mark.browser
def test_every_scripted_policy_reaches_reward_one_on_three_seeds():
    results = _play_all(sorted(POLICIES), (0, 1, 2))
    assert len(results) == 3 * len(POLICIES)
    assert not _failures(results)


# Seeds our action space cannot solve: the two buttons overlap and the one to click has its centre
# under the other, while Click acts at an element's centre (the page's own layout, not the policy).
UNREACHABLE = {("miniwob/click-test-2", 6), ("miniwob/click-test-transfer", 6), ("miniwob/click-button-sequence", 6)}


@pytest.mark.browser
@pytest.mark.slow
def test_every_scripted_policy_reaches_reward_one_on_seeds_0_to_9():
    results = _play_all(sorted(POLICIES), range(10))
    assert {(task, seed) for task, seed, *_ in _failures(results)} <= UNREACHABLE, _failures(results)


# ---- policies on hand-written observations ------------------------------------------------------
def test_there_are_at_least_30_policies_and_unknown_tasks_are_named():
    assert len(POLICIES) >= 30
    with pytest.raises(KeyError, match="no scripted policy for miniwob/drag-box; scripted: "):
        scripted_action("miniwob/drag-box", "Drag the box", "")


GUESS_PAGE = ('Guess the number between 0-9 and press Submit. {feedback} <form><input id="0" type="number"{value} '
              'data-bbox="12,107,38,21"></input> <button id="1" data-bbox="53,102,95,31">Submit</button></form>')


def _guess(feedback: str, value: str, history: list[str]) -> str:
    page = GUESS_PAGE.format(feedback=feedback, value=f' value="{value}"' if value else "")
    return scripted_action("miniwob/guess-number", "Guess the number", page, history)


def test_guess_number_bisects_from_its_own_past_guesses():
    """The page shows only the last guess's feedback; earlier ones follow from the guesses made."""
    typed = lambda n: f'do(action="Type", argument="{n}", element="0")'  # noqa: E731
    submit = 'do(action="Click", element="1")'
    assert _guess("Waiting for your guess...", "", []) == typed(4)
    assert _guess("Waiting for your guess...", "4", [typed(4)]) == submit  # typed, not yet submitted
    assert _guess("The number is higher than 4.", "4", [typed(4), submit]) == typed(7)
    # 4 then 7 was "higher than 4"; now "lower than 7": 5..6 remain
    assert _guess("The number is lower than 7.", "7", [typed(4), submit, typed(7), submit]) == typed(5)


def test_movie_search_reads_labels_before_or_after_their_inputs():
    ins = "Search for drama movies directed by Holloway from year 2011."
    before = (f"{ins} Genre <input id=\"0\" type=\"text\"></input> Year <input id=\"1\" type=\"text\"></input> "
              "Director Name <input id=\"2\" type=\"text\"></input> <button id=\"3\" type=\"button\">Search</button>")
    after = (f"{ins} <input id=\"0\" type=\"text\"></input> Year <input id=\"1\" type=\"text\"></input> Genre "
             "<input id=\"2\" type=\"text\"></input> Director <div id=\"3\">Search</div>")
    assert scripted_action("miniwob/multi-layouts", ins, before) == 'do(action="Type", argument="drama", element="0")'
    assert scripted_action("miniwob/multi-layouts", ins, after) == 'do(action="Type", argument="2011", element="0")'
    filled = after
    for element, value in (("0", "2011"), ("1", "drama"), ("2", "Holloway")):
        filled = filled.replace(f'id="{element}" type', f'id="{element}" value="{value}" type')
    assert scripted_action("miniwob/multi-layouts", ins, filled) == 'do(action="Click", element="3")'


def test_policies_that_need_their_history_use_it():
    page = 'Click button ONE, then click button TWO. <button id="0">ONE</button> <button id="1">TWO</button>'
    first = scripted_action("miniwob/click-button-sequence", "Click button ONE, then click button TWO.", page)
    assert first == 'do(action="Click", element="0")'
    second = scripted_action("miniwob/click-button-sequence", "Click button ONE, then click button TWO.", page, [first])
    assert second == 'do(action="Click", element="1")'


def test_a_page_without_what_the_policy_needs_raises_policy_stuck():
    with pytest.raises(PolicyStuck, match="no button labelled 'Submit'"):
        POLICIES["enter-text"](View('Enter "kate" into the text field', '<input id="0" value="kate"></input>'))


# ---- the split -----------------------------------------------------------------------------------
def test_the_split_covers_every_installed_task_once():
    installed = {p.stem for p in (miniwob_html_dir() / "miniwob").glob("*.html")}
    assert set(TRAIN).isdisjoint(HELDOUT)
    assert set(TRAIN) | set(HELDOUT) == installed
    assert len(TRAIN) == len(set(TRAIN)) and len(HELDOUT) == len(set(HELDOUT))


def test_the_split_is_fixed():
    """Changing the split changes this hash: do it on purpose, never to fit results."""
    assert fingerprint() == "9a82ebc72d32c51e"
    assert (len(TRAIN), len(HELDOUT)) == (99, 31)


def test_held_out_tasks_include_scripted_ones_and_nodelay_twins_stay_together():
    scripted_heldout = sorted(n for n in POLICIES if is_heldout(n))
    assert len(scripted_heldout) >= 10  # held-out success can be read against a demonstrator ceiling
    assert len([n for n in POLICIES if not is_heldout(n)]) >= 30  # demonstrations come from train tasks only
    for name in [*TRAIN, *HELDOUT]:
        if name.endswith("-nodelay"):
            assert split_of(name) == split_of(name.removesuffix("-nodelay")), name


def test_miniwob_suite_exposes_the_split(cfg):
    suites = Suites(cfg.env)
    assert suites.by_name["miniwob"].splits == tuple(SPLITS) == ("train", "heldout")
    heldout = suites.select("miniwob", split="heldout")
    assert sorted(t.id for t in heldout) == sorted(f"miniwob/{n}" for n in HELDOUT)
    assert len(suites.select("miniwob", split="train")) == len(TRAIN)
    with pytest.raises(UnknownTask, match="not in split 'train'"):
        suites.select("miniwob", ["click-dialog-2"], split="train")
    with pytest.raises(KeyError, match="its splits: train, heldout"):
        suites.select("miniwob", split="test")


# ---- webrl env demo: held-out tasks are not demonstrations ------------------------------------
def test_demo_task_choice_leaves_held_out_tasks_out_of_saved_demos():
    every = scripted_tasks(None, None, save=False, allow_heldout=False)
    saved = scripted_tasks(None, None, save=True, allow_heldout=False)
    assert every == sorted(POLICIES)
    assert saved == sorted(n for n in POLICIES if not is_heldout(n))
    heldout = scripted_tasks(None, "heldout", save=False, allow_heldout=False)
    assert heldout == sorted(n for n in POLICIES if is_heldout(n))
    assert scripted_tasks(["miniwob/focus-text-2"], None, save=True, allow_heldout=True) == ["focus-text-2"]
    with pytest.raises(DemoRefused, match="focus-text-2 is a held-out task .* never used for demonstrations"):
        scripted_tasks(["focus-text-2", "focus-text"], None, save=True, allow_heldout=False)
    with pytest.raises(DemoRefused, match="are held-out tasks"):
        scripted_tasks(None, "heldout", save=True, allow_heldout=False)
    with pytest.raises(DemoRefused, match="focus-text-2 not in split 'train'"):
        scripted_tasks(["focus-text-2"], "train", save=False, allow_heldout=False)
    with pytest.raises(DemoRefused, match="no split 'test'; its splits: train, heldout"):
        scripted_tasks(None, "test", save=False, allow_heldout=False)
    with pytest.raises(DemoRefused, match="no scripted policy for drag-box"):
        scripted_tasks(["drag-box"], None, save=False, allow_heldout=False)


def _webrl(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "webrl.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_env_demo_refuses_to_save_held_out_tasks(tmp_path):
    proc = _webrl("env", "demo", "--tasks", "click-test,click-dialog-2", "--save", str(tmp_path / "demos"),
                  "--config", "tiny")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "click-dialog-2 is a held-out task" in out and "--allow-heldout" in out
    assert not (tmp_path / "demos").exists()


@pytest.mark.browser
def test_env_demo_save_writes_demonstrations_that_sft_reads(tmp_path):
    from learner.sft import load_demos

    out = tmp_path / "demos"
    proc = _webrl("env", "demo", "--tasks", "click-button-sequence,enter-text", "--seeds", "2", "--save", str(out),
                  "--config", "tiny")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    demos = load_demos([out])
    assert len(demos) == 4  # every episode succeeded, and each is one demonstration
    # two actions each: ONE then TWO; type the text then press Submit
    assert [len(d.rounds) for d in demos] == [2, 2, 2, 2]
    sequence = [a for d in demos if "button ONE" in d.instruction for _, a in d.rounds]
    assert sequence == ['do(action="Click", element="0")', 'do(action="Click", element="1")'] * 2
