"""The models `webrl train` runs besides the policy, as Ray actors, so that each lands where its config puts
it (a GPU node of cluster.yaml for an 8B model) instead of in the driver process on the head node:

- the outcome reward model (``orm.cpus``/``orm.gpus``, ``ray.placement.orm``): :class:`RemoteORM`, a shell
  over :class:`reward.orm.OutcomeRewardModel`;
- the curriculum's generator engine (``curriculum.generator=engine``; ``curriculum.cpus``/``curriculum.gpus``,
  ``ray.placement.curriculum_generator``): :class:`RemoteEngineChat`, a shell over
  :class:`curriculum.generator.EngineChat`, which takes the policy's weights by object reference.

Ray restarts either if its process dies; a call in flight is retried on the new one.
"""

from __future__ import annotations

import os

from webrl.config import WebRLConfig
from webrl.types import Trajectory


class _Service:
    """A Ray actor of class ``actor_class(cfg)`` with ``cpus``, ``gpus`` and the custom ``resources``."""

    def __init__(self, actor_class: type, cfg: WebRLConfig, cpus: float, gpus: float, resources: dict):
        import ray

        from webrl.cluster import placement_options

        self._ray = ray
        threads = {"OMP_NUM_THREADS": str(os.cpu_count() or 1)}  # torch on every core, whatever Ray reserved
        self.handle = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=-1, max_task_retries=-1,
                                 runtime_env={"env_vars": threads},
                                 **placement_options(resources))(actor_class).remote(cfg)

    def _call(self, method: str, *args):
        return self._ray.get(getattr(self.handle, method).remote(*args))

    def close(self) -> None:
        self._ray.kill(self.handle)


class _ORMActor:
    def __init__(self, cfg: WebRLConfig):
        from reward.orm import OutcomeRewardModel

        self.orm = OutcomeRewardModel.load(cfg)

    def p_yes(self, trajs: list[Trajectory]) -> list[float]:
        return self.orm.p_yes(trajs)


class RemoteORM(_Service):
    """What the phase driver calls (``p_yes``), answered by the ORM actor."""

    def __init__(self, cfg: WebRLConfig):
        super().__init__(_ORMActor, cfg, cfg.orm.cpus, cfg.orm.gpus, cfg.ray.placement.orm)

    def p_yes(self, trajs: list[Trajectory]) -> list[float]:
        """P(YES) / (P(YES) + P(NO)) of each trajectory, in order."""
        return self._call("p_yes", trajs) if trajs else []


class _EngineChatActor:
    def __init__(self, cfg: WebRLConfig):
        from actors.engine import make_engine
        from curriculum.generator import EngineChat

        cur = cfg.curriculum
        self.engine = make_engine(cfg, cur.model)
        self.chat = EngineChat(self.engine, cur, str(cur.model or cfg.rollout.model))

    def name(self) -> str:
        return self.chat.name

    def complete(self, chats: list[list[dict]]) -> list:
        return self.chat.complete(chats)

    def load_weights(self, weights: dict, version: int) -> int:
        self.engine.load_weights(weights, version).result()
        return self.engine.version


class RemoteEngineChat(_Service):
    """The generator's :class:`~curriculum.generator.Chat` (``name``, ``complete``), answered by its engine's actor."""

    def __init__(self, cfg: WebRLConfig):
        super().__init__(_EngineChatActor, cfg, cfg.curriculum.cpus, cfg.curriculum.gpus,
                         cfg.ray.placement.curriculum_generator)
        self.name = self._call("name")

    def complete(self, chats: list[list[dict]]) -> list:
        """One answer (or the error that stopped it) per chat."""
        return self._call("complete", chats)

    def load_weights(self, weights, version: int) -> int:
        """Load ``weights`` (a dict, or the object reference of one: Ray hands it to the actor without a copy
        through this process) as ``version``; the engine's version after."""
        return self._call("load_weights", weights, version)
