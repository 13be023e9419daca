"""Security defaults (issue 7, point 7): services on loopback unless configured otherwise, the browser
allowlist, no credentials in logs, run folders or checkpoints, secrets only from environment variables.

The allowlist itself (links, popups, form posts, redirects, iframes, downloads off the task's origins) is
tested with a real Chromium in tests/test_browser_pool.py::test_allowlist_blocks_every_way_off_site; here
only that every task carries an allowlist by default."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from urllib.request import urlopen

import psutil
import pytest
import yaml

from tests.conftest import FakeChatServer
from webrl.cluster import ray_init_options
from webrl.config import ConfigError, RayConfig, WebRLConfig, load_config

CANARY = "sk-canary-7f3e9d1c5b-NEVER-WRITE-ME"
ROOT = Path(__file__).resolve().parent.parent


def listening(pid: int, port: int) -> set[str]:
    """Addresses that process ``pid`` listens on at ``port`` (the real sockets, from the kernel)."""
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port}


# ---- loopback by default -------------------------------------------------------------------------

def test_ray_dashboard_defaults_to_loopback(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = RayConfig()
    assert cfg.dashboard_host == "127.0.0.1" and cfg.include_dashboard is False
    opts = ray_init_options(cfg)
    assert opts["dashboard_host"] == "127.0.0.1" and opts["_node_ip_address"] == "127.0.0.1"
    assert opts["include_dashboard"] is False and "address" not in opts
    # joining a cluster (ray job submit sets RAY_ADDRESS): none of the local-cluster options apply
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    joined = ray_init_options(cfg)
    assert joined["address"] == "127.0.0.1:6379" and "dashboard_host" not in joined and "_node_ip_address" not in joined
    # and on the cloud cluster the head starts its dashboard on loopback (tests/test_cluster_config.py checks more)
    head = " ".join(yaml.safe_load((ROOT / "cluster.yaml").read_text())["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


def test_static_server_listens_on_bind_host_only(tmp_path):
    from envpool.static_server import StaticServer

    (tmp_path / "index.html").write_text("<p>hi</p>")
    cfg = load_config("tiny")
    for host in (cfg.env.bind_host, "127.0.0.2"):  # the default, then another loopback address set in the config
        server = StaticServer(tmp_path, host=host)
        try:
            port = int(server.url.rsplit(":", 1)[1].strip("/"))
            assert listening(psutil.Process().pid, port) == {host}
            assert b"hi" in urlopen(server.url, timeout=5).read()
        finally:
            server.close()
    assert cfg.env.bind_host == "127.0.0.1"


def test_sandbox_sites_listen_on_loopback_only():
    from envpool.sandbox.process import SandboxServer

    cfg = load_config("tiny", ["env.sandbox.products=40", "env.sandbox.orders=40", "env.sandbox.customers=10",
                               "env.sandbox.forum_users=10", "env.sandbox.posts=30", "env.sandbox.comments=60"])
    server = SandboxServer(cfg.env.sandbox, host=cfg.env.bind_host).start()
    try:
        urls = list(server.urls.values()) + [server.control_url]
        ports = {int(u.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]) for u in urls}
        assert len(ports) == 4  # shop, admin, forum, control
        sockets = {c.laddr for c in psutil.Process(server.proc.pid).net_connections(kind="inet")
                   if c.status == psutil.CONN_LISTEN}
        assert {s.port for s in sockets} >= ports
        assert all(s.ip == "127.0.0.1" for s in sockets if s.port in ports), sockets
    finally:
        server.close()


# ---- the browser allowlist ---------------------------------------------------------------------------

def test_every_episode_is_guarded_by_an_allowlist():
    """A task without allowed_origins is still confined: to its start URL's origin."""
    from envpool.pool import _Episode
    from webrl.types import Task

    bare = Task(id="t", suite="adhoc", instruction="look", start_url="http://127.0.0.1:8080/shop/")
    listed = bare.model_copy(update={"allowed_origins": ["http://127.0.0.1:8080", "http://127.0.0.1:9090"]})
    for task, also in ((bare, False), (listed, True)):
        allow = _Episode(None, None, task, 0.0, 1.0).guard.allowlist
        assert allow.allows("http://127.0.0.1:8080/shop?q=1") and allow.allows("http://127.0.0.1:9090/") is also
        assert not allow.allows("https://example.com/") and not allow.allows("file:///etc/passwd")
        assert not allow.allows("http://127.0.0.1:8081/")


# ---- secrets: only from the environment, never written -----------------------------------------------

SECRET_WORDS = {"key", "secret", "password", "passwd", "credential", "credentials", "token", "apikey"}
NOT_SECRETS = {  # names that look like secrets but hold none
    "env.webarena.auth_dir": "a folder of Playwright storage-state files (logins as files, not values)",
}


def config_fields(model=WebRLConfig, prefix: str = ""):
    from pydantic import BaseModel

    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from config_fields(ann, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def test_secret_config_fields_hold_environment_variable_names_only():
    fields = list(config_fields())
    assert "curriculum.api_key_env" in fields and len(fields) > 100
    secretish = [f for f in fields if SECRET_WORDS & set(f.rsplit(".", 1)[-1].split("_"))]
    offenders = [f for f in secretish if not f.endswith("_env") and f not in NOT_SECRETS]
    assert secretish and not offenders, f"config fields that would hold a secret's value: {offenders} (make them *_env)"
    # URLs cannot smuggle credentials in either
    for key in ("curriculum.endpoint_url=https://user:pw@api.example.com/v1", "env.webarena.urls.gitlab=http://root:pw@gl:8023"):
        with pytest.raises(ConfigError, match="must not carry credentials"):
            load_config("tiny", [key])


def test_a_key_from_the_environment_is_used_but_never_logged_dumped_or_checkpointed(monkeypatch, caplog, capsys, tmp_path):
    """The canary key reaches the endpoint (so the code path really used it) and nowhere else: not the logs,
    not the config a run folder keeps, not a checkpoint's manifest or files."""
    from curriculum.generator import make_generator
    from learner.checkpoint import save_checkpoint
    from learner.group import build_policy
    from learner.learner import Learner
    from webrl.types import Task

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("WEBRL_TEST_CANARY_KEY", CANARY)
    server = FakeChatServer("1. Show me the newest review of the yoga mat.", CANARY)
    try:
        cfg = load_config("tiny", ["curriculum.generator=openai", f"curriculum.endpoint_url={server.url}",
                                   "curriculum.model=fake-llm", "curriculum.api_key_env=WEBRL_TEST_CANARY_KEY"])
        failed = {"shop": [Task(id="sandbox/shop-x-0", suite="sandbox", instruction="Add a yoga mat to my cart.",
                                start_url="__SHOP__/", allowed_origins=["http://shop.test"])]}
        result = make_generator(cfg).generate(failed, 1)
    finally:
        server.close()
    assert server.requests and server.requests[0]["auth"] == f"Bearer {CANARY}"  # it was read and sent
    assert result.stats["prompts"] == 1 and not result.stats.get("errors")

    # what webrl train writes into the run folder (webrl/train.py: config.json), and a learner checkpoint
    (tmp_path / "config.json").write_text(cfg.model_dump_json(indent=2))
    assert json.loads((tmp_path / "config.json").read_text())["curriculum"]["api_key_env"] == "WEBRL_TEST_CANARY_KEY"
    policy = build_policy({"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                           "num_attention_heads": 2, "num_key_value_heads": 1})
    save_checkpoint(tmp_path / "ckpt", Learner(policy, cfg.learner, micro_batch=1), phase=0, step=0)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" or p.suffix == ".json" for p in (tmp_path / "ckpt").rglob("*"))
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), path
    out = capsys.readouterr()
    assert CANARY not in caplog.text and CANARY not in out.out and CANARY not in out.err
    assert re.search(r"sk-canary", caplog.text + out.out + out.err) is None
