"""cluster.yaml against Ray's own autoscaler schema, its custom resources against configs/gpu-8b.yaml's
placement, and placement by custom resources on a real local Ray cluster."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import yaml

from webrl.cluster import check_placement, init_ray
from webrl.config import ConfigError, PlacementConfig, load_config

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster.yaml"
STANDARD = {"CPU", "GPU", "memory", "object_store_memory"}


def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def advertised(config: dict) -> dict[str, set[str]]:
    """Node type -> the custom resources it advertises."""
    return {name: set(t.get("resources", {})) - STANDARD for name, t in config["available_node_types"].items()}


def test_cluster_yaml_passes_rays_schema_as_ray_up_fills_it():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = cluster_config()
    validate_config(copy.deepcopy(raw))  # as written (has cluster_synced_files)
    filled = prepare_config(copy.deepcopy(raw))  # what `ray up` validates: AWS defaults merged in
    validate_config(filled)
    assert filled["provider"]["type"] == "aws" and filled["head_node_type"] == "ray.head.cpu"
    types = filled["available_node_types"]
    assert set(types) == {"ray.head.cpu", "ray.worker.browser", "ray.worker.rollout", "ray.worker.learner"}
    for name, t in types.items():
        if name != filled["head_node_type"]:
            assert 0 <= t["min_workers"] <= t["max_workers"], name
    assert sum(t["max_workers"] for n, t in types.items() if n != "ray.head.cpu") <= filled["max_workers"]
    assert filled["idle_timeout_minutes"] > 0


def test_schema_check_is_real():
    """The validator refuses what the schema forbids (so the test above means something)."""
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    bad = cluster_config()
    bad["available_node_types"]["ray.worker.rollout"]["resources"]["webrl_rollout"] = 0.5  # integers only
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)
    bad = cluster_config()
    bad["available_node_types"]["ray.worker.browser"]["min_wrokers"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(bad)


def test_setup_installs_the_right_extra_per_node_type_and_dashboard_stays_on_loopback():
    from ray.autoscaler._private.util import prepare_config

    config = prepare_config(cluster_config())
    gpu_types = {"ray.worker.rollout", "ray.worker.learner"}
    for name, t in config["available_node_types"].items():
        # a node type's own worker_setup_commands replace the merged setup_commands (Ray's autoscaler)
        commands = t.get("worker_setup_commands", config["head_setup_commands" if name == "ray.head.cpu"
                                                           else "worker_setup_commands"])
        setup = [c for c in commands if "scripts/setup.sh" in c]
        assert len(setup) == 1, name
        assert ("WEBRL_EXTRA=gpu" in setup[0]) == (name in gpu_types), (name, setup)
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head


def test_node_types_advertise_exactly_what_gpu_8b_places_on():
    types = advertised(cluster_config())
    placed = load_config("gpu-8b").ray.placement.roles()
    asked = {name for res in placed.values() for name in res}
    assert asked == set().union(*types.values())
    # each role's resource lives on exactly one node type, and each node type serves one role
    for role, res in placed.items():
        (name,) = res
        assert sum(name in r for r in types.values()) == 1, (role, name)
    assert types["ray.head.cpu"] == {"webrl_head"} and types["ray.worker.learner"] == {"webrl_learner"}
    assert types["ray.worker.browser"] == {"webrl_browser"} and types["ray.worker.rollout"] == {"webrl_rollout"}


def test_gpu_8b_loads_with_its_shape():
    cfg = load_config("gpu-8b")
    assert cfg.learner.strategy == "fsdp2" and cfg.learner.precision == "bf16" and cfg.train.learner_ranks == 8
    assert cfg.train.learner_gpus_per_rank == 1 and cfg.rollout.worker_gpus == 1 and cfg.rollout.engine == "vllm"
    assert cfg.rollout.vllm.engine_args["tensor_parallel_size"] == 1
    assert cfg.rollout.vllm.engine_args["max_model_len"] == cfg.learner.context_tokens + cfg.rollout.max_new_tokens
    # the browsers hold every episode the workers run at once
    assert cfg.rollout.browser_pools * cfg.env.browser.contexts >= cfg.rollout.workers * cfg.rollout.episodes_per_worker
    learner_node = cluster_config()["available_node_types"]["ray.worker.learner"]["resources"]["webrl_learner"]
    assert cfg.train.learner_ranks * cfg.ray.placement.learner_rank["webrl_learner"] <= learner_node


def test_check_placement_names_the_field_and_the_resource():
    placement = PlacementConfig(browser_pool={"webrl_browser": 1}, learner_rank={"webrl_learner": 1})
    check_placement(placement, {"CPU": 4, "webrl_browser": 2, "webrl_learner": 8})
    check_placement(PlacementConfig(), {"CPU": 1})  # nothing asked: a local run needs nothing
    with pytest.raises(ConfigError) as err:
        check_placement(placement, {"CPU": 4, "webrl_browser": 2, "node:127.0.0.1": 1})
    msg = str(err.value)
    assert "ray.placement.learner_rank" in msg and "'webrl_learner'" in msg and "no node advertises it" in msg
    assert "browser_pool asks" not in msg and "custom resources: webrl_browser." in msg and "ray.autoscaling=true" in msg
    assert "--set ray.placement.learner_rank={}" in msg
    with pytest.raises(ConfigError, match=r"ray.placement.browser_pool asks for 3 of resource 'webrl_browser', but the whole cluster has 2"):
        check_placement(PlacementConfig(browser_pool={"webrl_browser": 3}), {"webrl_browser": 2})
    with pytest.raises(ValueError, match="must be > 0"):
        PlacementConfig(rollout_worker={"webrl_rollout": 0})


@pytest.fixture(scope="module")
def ray_with_resources():
    """A local Ray cluster whose one node advertises webrl_browser and webrl_learner, not webrl_rollout."""
    import ray

    cfg = load_config("tiny", ["ray.namespace=test-placement"])
    init_ray(cfg.ray, num_cpus=2, resources={"webrl_browser": 2, "webrl_learner": 1})
    yield ray
    ray.shutdown()


def _wait_for(predicate, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_actors_land_where_their_resources_are_and_wait_where_none_are(ray_with_resources, tmp_path):
    from actors.replay_buffer import remote_buffer
    from actors.rollout_worker import remote_worker
    from envpool.pool import remote_pool
    from learner.group import LearnerGroup

    ray = ray_with_resources
    cfg = load_config("tiny", ["ray.placement.rollout_worker={webrl_rollout: 1}",
                               "ray.placement.browser_pool={webrl_browser: 1}"])
    with pytest.raises(ConfigError, match=r"ray.placement.rollout_worker asks for 1 of resource 'webrl_rollout'"):
        init_ray(cfg.ray)  # joined already; the check still runs
    init_ray(cfg.ray.model_copy(update={"autoscaling": True}))  # an autoscaler would bring the node: no error

    pool = remote_pool(cfg.env, num_cpus=0, resources=cfg.ray.placement.browser_pool)
    buffer = remote_buffer(tmp_path / "buffer", resources={"webrl_browser": 1})
    assert ray.get(pool.episodes.remote(), timeout=60) == [] and ray.get(buffer.ids.remote(), timeout=60) == []
    assert "webrl_browser" not in ray.available_resources()  # both placed, both holding one unit

    worker = remote_worker(cfg, "w-pending", [pool])  # asks for webrl_rollout, which no node has
    ready, _ = ray.wait([worker.version.remote()], timeout=3)
    assert not ready  # pending: never scheduled, its engine never built

    group = LearnerGroup(1, {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                             "num_attention_heads": 2, "num_key_value_heads": 1}, cfg.learner,
                         num_cpus_per_rank=0, resources={"webrl_learner": 1})
    assert _wait_for(lambda: "webrl_learner" not in ray.available_resources())  # the rank holds the node's one unit
    for actor in [worker, pool, buffer, *group.ranks]:
        ray.kill(actor)
    assert _wait_for(lambda: ray.available_resources().get("webrl_browser") == 2
                     and ray.available_resources().get("webrl_learner") == 1)
