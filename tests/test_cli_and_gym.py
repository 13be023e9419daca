"""The ``webrl`` command (env list / show / play / demo, config errors, --help) and the gymnasium
``WebEnv``, locally and over a Ray ``BrowserPool`` actor."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest

from webrl.cli import main

REPO = Path(__file__).resolve().parent.parent
URL = re.compile(r"(?:https?|file)://\S+")


def _flat(text: str) -> str:
    """Rich wraps long lines at the console width: compare with whitespace collapsed."""
    return " ".join(text.split())


def _cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


# ---- env list, config errors, --help: no browser -----------------------------------------------
def test_env_list_json(capsys):
    code, out = _cli(capsys, "env", "list", "--json")
    assert code == 0
    ids = json.loads(out)
    assert isinstance(ids, list) and len(ids) >= 130
    from envpool.suites import SUITE_CLASSES

    assert all(isinstance(i, str) and i.split("/", 1)[0] in SUITE_CLASSES for i in ids)
    assert "miniwob/click-button" in ids and "miniwob/login-user" in ids
    assert len(set(ids)) == len(ids)


def test_env_list_suite_filter_and_plain_text(capsys):
    code, out = _cli(capsys, "env", "list", "--suite", "miniwob")
    assert code == 0
    lines = out.splitlines()
    assert "miniwob/click-button" in lines
    assert "tasks in miniwob" in out


def test_mistyped_config_key_is_named_with_a_suggestion(capsys):
    code, out = _cli(capsys, "env", "list", "--set", "env.browser.contxts=3")
    assert code == 2
    flat = _flat(out)
    assert "env.browser.contxts" in flat
    assert "did you mean 'env.browser.contexts'" in flat


def test_unknown_task_id_suggests_the_closest(capsys):
    code, out = _cli(capsys, "env", "show", "miniwob/click-buton", "--config", "tiny")
    assert code == 2
    flat = _flat(out)
    assert "miniwob/click-buton" in flat and "did you mean" in flat
    assert "miniwob/click-button" in flat


def test_play_without_actions_asks_for_one(capsys):
    code, out = _cli(capsys, "env", "play", "miniwob/click-button", "--config", "tiny")
    assert code == 2
    assert "--action" in out and "--scripted" in out


@pytest.mark.parametrize("argv, expected", [
    (["--help"], ["examples:", "webrl env show miniwob/click-button --seed 3", "env"]),
    (["env", "--help"], ["examples:", "list", "show", "play", "demo"]),
    (["env", "play", "--help"], ["--action", "--scripted", "--seed", "--config", "--set", "target"]),
])
def test_help_exits_zero(capsys, argv, expected):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in expected:
        assert word in out, (word, out)


# ---- env show / play: a real Chromium ------------------------------------------------------------
@pytest.mark.browser
def test_env_show_task_is_reproducible_by_seed(capsys):
    code, first = _cli(capsys, "env", "show", "miniwob/click-button", "--seed", "3", "--config", "tiny")
    assert code == 0
    assert "instruction:" in first and 'Click on the "' in first
    assert "<button id=" in first
    assert "episode: truncated after 0 steps" in _flat(first)
    code, second = _cli(capsys, "env", "show", "miniwob/click-button", "--seed", "3", "--config", "tiny")
    assert code == 0
    assert URL.sub("URL", first) == URL.sub("URL", second)


@pytest.mark.browser
def test_env_show_file_page(capsys, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body><h1>Hello from tmp_path</h1>"
                    "<p>a paragraph of test text</p><button>Press me</button></body></html>")
    code, out = _cli(capsys, "env", "show", page.as_uri(), "--config", "tiny")
    assert code == 0
    assert "Hello from tmp_path" in out and "a paragraph of test text" in out
    assert re.search(r'<button id="0"[^>]*>Press me</button>', out)
    assert "elements: 1" in out


def test_env_show_missing_file_is_a_clean_error(capsys, tmp_path):
    code, out = _cli(capsys, "env", "show", (tmp_path / "missing.html").as_uri(), "--config", "tiny")
    assert code == 2
    assert "no such file" in out


@pytest.mark.browser
def test_env_play_actions_built_from_the_observation_solve_login_user(capsys):
    code, shown = _cli(capsys, "env", "show", "miniwob/login-user", "--seed", "3", "--config", "tiny")
    assert code == 0
    flat = _flat(shown)
    user, password = re.search(r'instruction: Enter the username "([^"]+)" and the password "([^"]+)"', flat).groups()
    html = flat.split("instruction:", 1)[1]
    inputs = re.findall(r'<input id="(\d+)"', html)
    button = re.search(r'<button id="(\d+)"[^>]*>Login</button>', html).group(1)
    assert len(inputs) == 2
    actions = [
        f'do(action="Type", argument="{user}", element="{inputs[0]}")',
        f'do(action="Type", argument="{password}", element="{inputs[1]}")',
        f'do(action="Click", element="{button}")',
    ]
    argv = ["env", "play", "miniwob/login-user", "--seed", "3", "--config", "tiny"]
    for a in actions:
        argv += ["--action", a]
    code, out = _cli(capsys, *argv)
    assert code == 0
    flat = _flat(out)
    assert "status: done" in flat
    assert "episode: done after 3 steps, reward 1.0" in flat


@pytest.mark.browser
def test_env_play_scripted_and_a_malformed_action(capsys):
    code, out = _cli(capsys, "env", "play", "miniwob/login-user", "--seed", "3", "--config", "tiny",
                     "--action", "this is (not an action", "--scripted")
    assert code == 0
    flat = _flat(out)
    assert "invalid action" in flat
    assert "episode: done" in flat and "reward 1.0" in flat
    assert "Traceback" not in out


# ---- WebEnv ----------------------------------------------------------------------------------------
def test_web_env_can_be_constructed(cfg):
    from envpool.web_env import WebEnv

    env = WebEnv("miniwob/click-test", cfg.env)  # builds a local BrowserPool; Chromium starts only on reset
    try:
        assert isinstance(env, gymnasium.Env)
        assert env.observation_space.contains('<button id="0">Click Me!</button>')
        assert env.action_space.contains('do(action="Click", element="0")')
    finally:
        env.close()


@pytest.mark.browser
def test_web_env_local_pool(cfg):
    from envpool.suites.miniwob_scripts import scripted_action
    from envpool.web_env import WebEnv

    env = WebEnv("miniwob/click-test", cfg.env)
    try:
        assert isinstance(env, gymnasium.Env)
        with pytest.raises(RuntimeError):
            env.step('do(action="Click", element="0")')
        obs, info = env.reset(seed=1)
        assert isinstance(obs, str) and "<button id=" in obs
        assert info["instruction"] and info["status"] == "running"

        obs2, reward, terminated, truncated, info2 = env.step("click the button please")
        assert (reward, terminated, truncated) == (0.0, False, False)
        assert info2["status"] == "running"
        assert info2["error"] and "invalid" in info2["error"]
        assert obs2 == obs

        _, reward, terminated, truncated, info3 = env.step(scripted_action("miniwob/click-test", info["instruction"], obs2))
        assert reward == 1.0 and terminated is True and truncated is False
        assert info3["status"] == "done" and info3["error"] is None

        # a second episode in the same env: reset closes the old one
        obs, info = env.reset(seed=2)
        assert "<button id=" in obs and info["status"] == "running"
    finally:
        env.close()
    env.close()  # closing twice is harmless


@pytest.mark.browser
def test_web_env_on_a_ray_pool(cfg):
    # about 11 s on an idle machine (most of it starting and stopping Ray): not marked slow
    import ray

    from envpool.pool import remote_pool
    from envpool.suites.miniwob_scripts import scripted_action
    from envpool.web_env import WebEnv
    from webrl.cluster import init_ray

    init_ray(cfg.ray, num_cpus=2, include_dashboard=False)
    try:
        pool = remote_pool(cfg.env, num_cpus=0)
        env = WebEnv("miniwob/click-button", cfg.env, pool=pool)
        obs, info = env.reset(seed=5)
        assert info["status"] == "running"
        reward, terminated = 0.0, False
        for _ in range(cfg.env.max_steps):
            obs, reward, terminated, truncated, step_info = env.step(
                scripted_action("miniwob/click-button", info["instruction"], obs))
            assert step_info["error"] is None, step_info["error"]
            if terminated or truncated:
                break
        assert reward == 1.0 and terminated
        env.close()
        health = ray.get(pool.health.remote())
        assert health["episodes"] >= 1 and health["alive"] and health["running_episodes"] == 0
        ray.get(pool.shutdown.remote())
    finally:
        ray.shutdown()


# ---- env demo: its own process (it starts Ray) ------------------------------------------------------
@pytest.mark.browser
def test_env_demo_writes_a_report(tmp_path):
    report = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "webrl.cli", "env", "demo", "--tasks", "click-test,click-button", "--seeds", "1",
         "--config", "tiny", "--report", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["success_rate"] == 1.0
    assert data["episodes"] == 2
    assert sorted(t["task"] for t in data["tasks"]) == ["miniwob/click-button", "miniwob/click-test"]
    assert all(t["not_done"] == [] for t in data["tasks"])


def test_a_suite_config_error_is_a_clear_message_and_exit_2(capsys):
    """WebArena tasks need their sites' URLs: the CLI says which key to set, with no traceback."""
    code = main(["env", "show", "webarena/3"])
    err = capsys.readouterr()
    assert code == 2
    assert "config error" in err.out and "env.webarena.urls.map" in err.out.replace("\n", " ")
    assert "Traceback" not in err.out + err.err
