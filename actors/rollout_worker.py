"""``RolloutWorker``: one inference engine and many episodes at once on it. Each episode draws a browser
context from the pools, generation is batched across the worker's episodes by the engine, and each
finished trajectory goes to the replay buffer the moment it ends.

A plain class (tests drive it directly); :func:`remote_worker` makes it a Ray actor that Ray restarts
when its process dies. The fleet (``actors/fleet.py``) reruns the episodes a dead worker had and
hands a restarted worker the latest weights before its next episode.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import Mapping

from actors import metrics
from actors.agent import Agent, Env, RemotePool, failed_trajectory
from actors.engine import Engine, make_engine
from webrl.config import WebRLConfig
from webrl.types import EpisodeSpec, EpisodeStatus, EpisodeSummary, Trajectory

log = logging.getLogger(__name__)


class RolloutWorker:
    def __init__(self, cfg: WebRLConfig | dict, worker_id: str, pools: list, buffer=None, *,
                 model_path: str | None = None, engine: Engine | None = None):
        self.cfg = cfg if isinstance(cfg, WebRLConfig) else WebRLConfig.model_validate(cfg)
        self.worker_id = worker_id
        self.set_pools(pools)
        self.buffer = buffer
        self.model = str(model_path or self.cfg.rollout.model)
        self.engine = engine or make_engine(self.cfg, model_path, seed=self.cfg.seed)
        self.agent = Agent(self.engine, self.cfg, worker_id=worker_id, model=self.model)
        self._version_changed = asyncio.Condition()
        self.running = 0
        self.finished = 0
        self.channel = None  # the weight broadcast channel, once the fleet forms one

    async def run(self, spec: EpisodeSpec | dict) -> EpisodeSummary:
        """Run one episode (again, in a fresh browser context, if the browser crashed under it), store
        its trajectory in the replay buffer, and report how it went."""
        spec = spec if isinstance(spec, EpisodeSpec) else EpisodeSpec.model_validate(spec)
        self.running += 1
        try:
            await self._admit(spec)
            traj = None
            for attempt in range(spec.attempt, self.cfg.rollout.max_attempts + 1):
                env = next(self._next_env)
                traj = await self._episode(env, spec.model_copy(update={"attempt": attempt}))
                if traj.outcome.status is not EpisodeStatus.interrupted:
                    break
                log.warning("episode %s: %s (attempt %d)", spec.id, traj.outcome.reason, attempt)
            stored = await self._store(traj)
            self.finished += 1
            metrics.episode_finished(self.worker_id, traj, self.engine.info())
            return EpisodeSummary.of(traj, stored)
        finally:
            self.running -= 1

    def set_pools(self, pools: list) -> int:
        """Draw browser contexts from ``pools`` (BrowserPool actors, or local pools) from now on; episodes
        running keep the pool they have. The fleet calls it when ``webrl scale browsers`` changed the pools."""
        envs: list[Env] = [p if hasattr(p, "reset") and not hasattr(p.reset, "remote") else RemotePool(p) for p in pools]
        if not envs:
            raise ValueError("a rollout worker needs at least one browser pool")
        self.envs, self._next_env = envs, itertools.cycle(envs)
        return len(envs)

    async def _episode(self, env: Env, spec: EpisodeSpec) -> Trajectory:
        try:
            return await self.agent.run(env, spec)
        except Exception as e:  # noqa: BLE001 - the browser pool's own failure: record it, never lose the episode
            log.exception("episode %s failed in the environment", spec.id)
            reason = f"the browser pool failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            return failed_trajectory(spec, EpisodeStatus.interrupted, reason, worker_id=self.worker_id, model=self.model)

    async def _store(self, traj: Trajectory) -> bool:
        if self.buffer is None:
            return True
        if hasattr(self.buffer.add, "remote"):  # the ReplayBuffer actor
            return await self.buffer.add.remote(traj)
        return self.buffer.add(traj)

    async def _admit(self, spec: EpisodeSpec) -> None:
        """max_staleness admission: wait until this worker's weights are at least ``spec.min_version``."""
        if self.engine.version >= spec.min_version:
            return
        async with self._version_changed:
            await self._version_changed.wait_for(lambda: self.engine.version >= spec.min_version)

    async def load_weights(self, weights: Mapping, version: int) -> int:
        """Load a published policy version (a state dict; through Ray it arrives from the object store)."""
        if version > self.engine.version:
            await asyncio.wrap_future(self.engine.load_weights(weights, version))
            async with self._version_changed:
                self._version_changed.notify_all()
        return self.engine.version

    def weight_member(self) -> dict:
        """What the fleet needs to place this worker in the weight channel: its GPU (``device``, None on CPU:
        NCCL is kept away from a GPU the learner shares) and its process id (``pid``: a restarted worker
        has a new one and must join again)."""
        from actors.weight_broadcast import device_identity

        return {"device": device_identity(), "pid": os.getpid()}

    async def join_weight_channel(self, spec, rank: int) -> None:
        """Join the broadcast channel (:class:`actors.weight_broadcast.ChannelSpec`) as ``rank``, leaving any
        earlier one; returns once every member has joined."""
        from actors.weight_broadcast import WeightChannel

        self.leave_weight_channel()
        self.channel = await asyncio.to_thread(WeightChannel, spec, rank)

    def leave_weight_channel(self) -> None:
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.close()

    async def receive_weights(self) -> int:
        """Take part in the channel's next broadcast: the engine thread receives the buckets as it loads them,
        once its requests in flight have finished. Returns the version the engine holds."""
        if self.channel is None:
            raise RuntimeError(f"worker {self.worker_id} has no weight channel: the fleet forms it before a broadcast")
        received = await asyncio.to_thread(self.channel.receive)  # waits for the round's plan
        await asyncio.wrap_future(self.engine.load_weights(received, received.version))
        async with self._version_changed:
            self._version_changed.notify_all()
        return self.engine.version

    def info(self) -> dict:
        return {"worker_id": self.worker_id, "running": self.running, "finished": self.finished,
                "model": self.model, "niceness": os.nice(0), **self.engine.info()}

    def version(self) -> int:
        return self.engine.version

    def shutdown(self) -> None:
        self.leave_weight_channel()
        self.engine.close()


def remote_worker(cfg: WebRLConfig, worker_id: str, pools: list, buffer=None, *, model_path: str | None = None,
                  **options):
    """Start a :class:`RolloutWorker` as a Ray actor; Ray restarts its process if it dies (the fleet
    reruns its episodes elsewhere meanwhile). It asks for the custom resources of
    ``ray.placement.rollout_worker`` (a rollout GPU node of cluster.yaml)."""
    import ray

    from webrl.cluster import placement_options

    r = cfg.rollout
    threads = r.engine_threads or os.cpu_count() or 1
    defaults = {"num_cpus": r.worker_cpus, "num_gpus": r.worker_gpus, "max_restarts": -1, "max_task_retries": 0,
                "max_concurrency": 1000, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": str(threads),
                                                "RAY_worker_niceness": str(r.niceness)}}}
    defaults |= placement_options(cfg.ray.placement.rollout_worker)
    return ray.remote(**(defaults | options))(RolloutWorker).remote(cfg, worker_id, pools, buffer, model_path=model_path)
