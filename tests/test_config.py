"""Tests for ``webrl/config.py``: presets, ``--set`` overrides and the error messages for bad keys."""

from __future__ import annotations

import pytest

from webrl.config import (
    CONFIG_DIR,
    DEFAULT_PRESET,
    ConfigError,
    WebRLConfig,
    load_config,
    parse_override,
    resolve_preset,
)

# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------


def test_default_preset_loads_with_paper_defaults():
    assert WebRLConfig().env.max_steps == 30  # paper: at most 30 steps per episode (local.yaml sets 8: a laptop's budget)
    cfg = load_config()
    assert isinstance(cfg, WebRLConfig)
    assert cfg == load_config(DEFAULT_PRESET)
    # the default preset validates to the same thing as a re-validation of its own dump
    assert WebRLConfig.model_validate(cfg.model_dump()) == cfg


@pytest.mark.parametrize("preset", ["local", "tiny"])
def test_presets_load(preset):
    cfg = load_config(preset)
    assert isinstance(cfg, WebRLConfig)
    assert cfg.env.browser.contexts > 0


def test_every_preset_file_loads():
    presets = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"local", "tiny"} <= set(presets)
    for name in presets:
        load_config(name)


def test_tiny_preset_values():
    cfg = load_config("tiny")
    assert cfg.env.max_steps == 10
    assert cfg.env.browser.contexts == 2
    assert cfg.env.browser.action_timeout_s == 5


def test_preset_by_path(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("env:\n  max_steps: 7\nseed: 3\n")
    cfg = load_config(f)
    assert cfg.env.max_steps == 7 and cfg.seed == 3
    assert load_config(str(f)) == cfg
    assert resolve_preset(f) == f


def test_empty_yaml_gives_defaults(tmp_path):
    f = tmp_path / "empty.yaml"
    f.write_text("# nothing here\n")
    assert load_config(f) == WebRLConfig()


# --------------------------------------------------------------------------------------------
# overrides
# --------------------------------------------------------------------------------------------


def test_overrides_apply_with_yaml_typing():
    cfg = load_config("tiny", ["env.browser.contexts=8", "env.observation.viewport_only=true"])
    assert cfg.env.browser.contexts == 8
    assert cfg.env.observation.viewport_only is True
    # untouched values from the preset stay
    assert cfg.env.max_steps == 10


@pytest.mark.parametrize(
    "override,getter,expected",
    [
        ("env.max_steps=12", lambda c: c.env.max_steps, 12),
        ("env.browser.headless=false", lambda c: c.env.browser.headless, False),
        ("env.browser.action_timeout_s=2.5", lambda c: c.env.browser.action_timeout_s, 2.5),
        ("env.browser.executable=null", lambda c: c.env.browser.executable, None),
        ("env.browser.executable=/usr/bin/chromium", lambda c: c.env.browser.executable, "/usr/bin/chromium"),
        ("env.browser.launch_args=[--a, --b]", lambda c: c.env.browser.launch_args, ["--a", "--b"]),
        ("env.observation.attributes=[]", lambda c: c.env.observation.attributes, []),
        ("env.bind_host=0.0.0.0", lambda c: c.env.bind_host, "0.0.0.0"),
        ("ray.address=ray://head:10001", lambda c: c.ray.address, "ray://head:10001"),
        ("ray.namespace='123'", lambda c: c.ray.namespace, "123"),
        ("seed=42", lambda c: c.seed, 42),
        (" seed = 42 ", lambda c: c.seed, 42),
        ("env.browser={contexts: 6}", lambda c: c.env.browser.contexts, 6),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_override_values(override, getter, expected):
    assert getter(load_config("tiny", [override])) == expected


def test_later_override_wins():
    cfg = load_config("tiny", ["env.max_steps=3", "env.max_steps=4"])
    assert cfg.env.max_steps == 4


def test_overrides_do_not_leak_between_loads():
    load_config("tiny", ["env.max_steps=3"])
    assert load_config("tiny").env.max_steps == 10


@pytest.mark.parametrize(
    "text,key,value",
    [
        ("env.browser.contexts=8", "env.browser.contexts", 8),
        ("a=true", "a", True),
        ("a=1.5", "a", 1.5),
        ("a=x=y", "a", "x=y"),
        ("a=", "a", ""),
        ("a=[1, 2]", "a", [1, 2]),
        ("a=: bad yaml [", "a", ": bad yaml ["),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_unknown_override_key_suggests_closest():
    with pytest.raises(ConfigError) as exc:
        load_config("tiny", ["env.browser.contxts=3"])
    msg = str(exc.value)
    assert "env.browser.contxts" in msg
    assert "did you mean 'env.browser.contexts'" in msg


def test_unknown_top_level_section_suggests_env():
    with pytest.raises(ConfigError) as exc:
        load_config("tiny", ["evn.max_steps=3"])
    msg = str(exc.value)
    assert "evn" in msg
    assert "did you mean 'env" in msg


@pytest.mark.parametrize(
    "override,bad,good",
    [
        ("env.observation.max_char=100", "env.observation.max_char", "env.observation.max_chars"),
        ("env.brwser.contexts=3", "env.brwser.contexts", "env.browser.contexts"),
        ("seeed=1", "seeed", "seed"),
        ("ray.adress=x", "ray.adress", "ray.address"),
        ("env.max_step=3", "env.max_step", "env.max_steps"),
    ],
)
def test_other_mistyped_override_keys(override, bad, good):
    with pytest.raises(ConfigError) as exc:
        load_config("tiny", [override])
    msg = str(exc.value)
    assert f"unknown config key '{bad}'" in msg
    assert f"did you mean '{good}'" in msg


def test_mistyped_key_in_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("env:\n  browser:\n    headles: false\n  max_steps: 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert str(f) in msg  # names the file
    assert "env.browser.headles" in msg
    assert "did you mean 'env.browser.headless'" in msg


def test_every_bad_key_in_a_file_is_reported(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("env:\n  max_stepz: 5\n  observation:\n    viewport_onyl: true\nsed: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    for bad, good in [
        ("env.max_stepz", "env.max_steps"),
        ("env.observation.viewport_onyl", "env.observation.viewport_only"),
        ("sed", "seed"),
    ]:
        assert f"unknown config key '{bad}'; did you mean '{good}'" in msg


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError) as exc:
        load_config("tiny", ["env.max_steps=abc"])
    msg = str(exc.value)
    assert "env.max_steps" in msg
    assert "abc" in msg


@pytest.mark.parametrize(
    "override,key",
    [
        ("env.browser.contexts=0", "env.browser.contexts"),  # gt=0
        ("env.browser.contexts=-2", "env.browser.contexts"),
        ("env.browser.relaunch_attempts=0", "env.browser.relaunch_attempts"),  # ge=1
        ("env.browser.headless=maybe", "env.browser.headless"),
        ("env.browser.action_timeout_s=fast", "env.browser.action_timeout_s"),
        ("env.observation.attributes=title", "env.observation.attributes"),
        ("env=3", "env"),
    ],
)
def test_invalid_values_name_the_key(override, key):
    with pytest.raises(ConfigError) as exc:
        load_config("tiny", [override])
    assert f"'{key}'" in str(exc.value)


def test_wrong_type_in_yaml_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("env:\n  max_steps: many\n")
    with pytest.raises(ConfigError, match=r"env\.max_steps"):
        load_config(f)


@pytest.mark.parametrize("override", ["env.max_steps", "env.max_steps 3", ""])
def test_override_without_equals_errors(override):
    with pytest.raises(ConfigError, match="key=value"):
        load_config("tiny", [override])


def test_override_without_key_errors():
    with pytest.raises(ConfigError, match="no key"):
        load_config("tiny", ["=3"])


def test_override_through_a_value_errors():
    with pytest.raises(ConfigError) as exc:
        load_config("tiny", ["env.max_steps.inner=3"])
    msg = str(exc.value)
    assert "env.max_steps.inner" in msg and "max_steps" in msg


@pytest.mark.parametrize(
    "content,typename",
    [("- a\n- b\n", "list"), ("just a string\n", "str"), ("42\n", "int")],
)
def test_non_mapping_yaml_errors(tmp_path, content, typename):
    f = tmp_path / "list.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert "mapping" in msg and typename in msg


def test_invalid_yaml_errors(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("env:\n  max_steps: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(f)


def test_unknown_preset_errors_and_lists_presets():
    with pytest.raises(ConfigError) as exc:
        load_config("no-such-preset")
    msg = str(exc.value)
    assert "no-such-preset" in msg
    assert "presets:" in msg
    assert "local" in msg and "tiny" in msg


def test_mistyped_preset_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load_config("tinny")


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_models_reject_unknown_keys_and_bad_assignment():
    cfg = load_config("tiny")
    with pytest.raises(ValueError):
        cfg.env.max_steps = "lots"  # validate_assignment
    with pytest.raises(ValueError):
        WebRLConfig.model_validate({"env": {"nope": 1}})


def test_empty_section_in_yaml_means_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("env:\n  # browser: commented out\n")
    cfg = load_config(str(path), ["env.max_steps=3"])
    assert cfg.env.max_steps == 3 and cfg.env.browser.contexts == 4


def test_bare_preset_name_wins_over_a_same_named_file_in_cwd(tmp_path, monkeypatch):
    (tmp_path / "tiny").write_text("not: [valid")
    monkeypatch.chdir(tmp_path)
    assert load_config("tiny").env.max_steps == 10
