"""Joining or starting the Ray cluster, with the project's secure defaults (127.0.0.1), and the placement
of actors on node types by custom resources (``ray.placement``, ``cluster.yaml``)."""

from __future__ import annotations

import os

from webrl.config import ConfigError, PlacementConfig, RayConfig


def init_ray(cfg: RayConfig, **kwargs):
    """Connect to ``cfg.address`` or start a local cluster whose services bind to 127.0.0.1; then check
    that the cluster has the custom resources ``cfg.placement`` asks for (unless ``cfg.autoscaling``)."""
    import ray

    if not ray.is_initialized():
        ray.init(**ray_init_options(cfg, **kwargs))
    if not cfg.autoscaling:
        check_placement(cfg.placement, ray.cluster_resources())
    return ray


def ray_init_options(cfg: RayConfig, **kwargs) -> dict:
    """The keyword arguments of ``ray.init`` for ``cfg``: a local cluster's dashboard and node address on
    ``cfg.dashboard_host`` / 127.0.0.1 (none of which apply when joining a cluster: ``cfg.address`` or
    ``$RAY_ADDRESS``); ``kwargs`` win."""
    options = {"namespace": cfg.namespace, "log_to_driver": True, "configure_logging": False}
    address = cfg.address or os.environ.get("RAY_ADDRESS")  # `ray job submit` sets RAY_ADDRESS for its entrypoint
    if address:
        options["address"] = address
    else:
        options.update(include_dashboard=cfg.include_dashboard, dashboard_host=cfg.dashboard_host,
                       _node_ip_address="127.0.0.1")
    return options | kwargs


def missing_resources(placement: PlacementConfig, available: dict[str, float]) -> list[tuple[str, str]]:
    """(role, what is wrong) per resource a placement field asks for that the cluster lacks (absent, or
    less in all than one actor asks for); empty when everything can be placed."""
    problems = []
    for role, wanted in placement.roles().items():
        for name, amount in wanted.items():
            have = available.get(name, 0)
            if have < amount:
                got = "no node advertises it" if not have else f"the whole cluster has {have:g}"
                problems.append((role, f"ray.placement.{role} asks for {amount:g} of resource '{name}', but {got}"))
    return problems


def check_placement(placement: PlacementConfig, available: dict[str, float]) -> None:
    """Raise :class:`ConfigError` naming each ``ray.placement`` field whose resource the cluster lacks (an
    actor asking for it would wait forever)."""
    problems = missing_resources(placement, available)
    if problems:
        custom = sorted(k for k in available if k not in {"CPU", "GPU", "memory", "object_store_memory"}
                        and not k.startswith("node:") and not k.startswith("accelerator_type:"))
        what = "; ".join(text for _, text in problems)
        example = '{"webrl_browser": 4}'
        raise ConfigError(
            f"{what}. The cluster's custom resources: {', '.join(custom) or 'none'}. Start the nodes with them "
            f"(cluster.yaml's node types advertise webrl_head, webrl_browser, webrl_rollout, webrl_learner; by hand: "
            f"ray start --resources='{example}'), set ray.autoscaling=true when an autoscaler will add such nodes, "
            f"or empty the field (--set ray.placement.{problems[0][0]}={{}}) to run anywhere.")


def placement_options(resources: dict[str, float]) -> dict:
    """``ray.remote`` options for one actor's placement: ``{"resources": ...}``, or nothing when empty (so a
    local run passes Ray exactly what it did before)."""
    return {"resources": dict(resources)} if resources else {}
