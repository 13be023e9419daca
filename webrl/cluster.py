"""Joining or starting the Ray cluster, with the project's secure defaults (127.0.0.1)."""

from __future__ import annotations

from webrl.config import RayConfig


def init_ray(cfg: RayConfig, **kwargs):
    """Connect to ``cfg.address`` or start a local cluster whose services bind to 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return ray
    options = {"namespace": cfg.namespace, "log_to_driver": True, "configure_logging": False}
    if cfg.address:
        options["address"] = cfg.address
    else:
        options.update(include_dashboard=cfg.include_dashboard, dashboard_host=cfg.dashboard_host,
                       _node_ip_address="127.0.0.1")
    ray.init(**(options | kwargs))
    return ray
