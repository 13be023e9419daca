"""The outcome reward model as a Ray actor, so that a run's judge lands where ``orm.gpus`` and
``ray.placement.orm`` put it (a GPU node of cluster.yaml for an 8B ORM) instead of in the driver process on the
head node. A thin shell over :class:`reward.orm.OutcomeRewardModel`: the same scores, one call per phase."""

from __future__ import annotations

from webrl.config import WebRLConfig
from webrl.types import Trajectory


class _ORMActor:
    def __init__(self, cfg: WebRLConfig):
        from reward.orm import OutcomeRewardModel

        self.orm = OutcomeRewardModel.load(cfg)

    def p_yes(self, trajs: list[Trajectory]) -> list[float]:
        return self.orm.p_yes(trajs)


class RemoteORM:
    """What the phase driver calls (``p_yes``), answered by the ORM actor; ``close`` ends the actor."""

    def __init__(self, cfg: WebRLConfig):
        import ray

        from webrl.cluster import placement_options

        oc = cfg.orm
        self._ray = ray
        self.handle = ray.remote(num_cpus=oc.cpus, num_gpus=oc.gpus, max_restarts=-1, max_task_retries=-1,
                                 **placement_options(cfg.ray.placement.orm))(_ORMActor).remote(cfg)

    def p_yes(self, trajs: list[Trajectory]) -> list[float]:
        """P(YES) / (P(YES) + P(NO)) of each trajectory, in order (retried on a restarted actor if it died)."""
        return self._ray.get(self.handle.p_yes.remote(trajs)) if trajs else []

    def close(self) -> None:
        self._ray.kill(self.handle)
