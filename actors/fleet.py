"""``RolloutFleet``: the driver's view of the rollout side. It owns the browser pools and the rollout
workers (Ray actors), hands episodes out so that every worker keeps ``episodes_per_worker`` running,
streams summaries back as episodes end, and survives workers dying:

- a worker's death fails its in-flight calls with a Ray actor error; those episodes go back to the
  queue and run on another worker (same episode id: the replay buffer stores each id once, so an
  episode that was stored just before the crash is not counted twice);
- Ray restarts the dead worker's process (``max_restarts``); it gets work again once it answers,
  after it has loaded the latest published weights;
- ``scale(n)`` adds workers (they pull the latest weights first) or retires some once their episodes end;
  ``scale_browsers(n)`` adds BrowserPool actors or retires some (workers stop drawing contexts from a retired
  pool at once; it is shut down once its episodes end). With a ``control`` link (``webrl/control.py``) the
  fleet follows ``webrl scale rollout|browsers N`` between dispatches and posts its live status.

Weights reach the workers one of two ways (``rollout.weight_sync``): through Ray's object store
(:meth:`RolloutFleet.publish`), or by a bucketed broadcast from learner rank 0 over a channel of its own
(``actors/weight_broadcast.py``; :meth:`RolloutFleet.weight_channel` forms it, :meth:`RolloutFleet.receive_broadcast`
runs a round). The channel is formed again at the next publish whenever its members changed (a worker added,
retired, or restarted). Each broadcast also leaves a copy in the object store: a worker that joins or restarts
before the next publish loads that one, as with the object store.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from actors import metrics
from actors.agent import failed_trajectory, suite_of
from actors.rollout_worker import remote_worker
from envpool.pool import remote_pool
from webrl.config import WebRLConfig
from webrl.types import EpisodeSpec, EpisodeStatus, EpisodeSummary

log = logging.getLogger(__name__)
_WORKER_LOST = (RayActorError, ActorDiedError, ActorUnavailableError)


@dataclass
class _Worker:
    id: str
    handle: object
    version: int = 0  # the weights version we know it holds
    inflight: int = 0
    ready_ref: object | None = None  # set while we wait for a (re)started worker to answer
    retiring: bool = False
    lost: int = 0  # times its process died under us
    pools_gen: int = 0  # the set of browser pools it was last told (RolloutFleet._pools_gen)
    started: float = field(default_factory=time.time)


class RolloutFleet:
    def __init__(self, cfg: WebRLConfig, buffer=None, *, pools: list | None = None, model_path: str | None = None,
                 control=None):
        self.cfg, self.buffer, self.model_path = cfg, buffer, model_path
        self.control = control  # a webrl.control.ControlLink: wanted counts in, live status out
        self.pools = pools if pools is not None else [self._new_pool() for _ in range(cfg.rollout.browser_pools)]
        self._pools_gen = 0  # bumped when the pools change; each worker is told the pools of the latest one
        self._retired_pools: dict[object, object | None] = {}  # pool -> its episodes() call in flight
        self._pool_health: dict = {"refs": None, "at": 0.0, "steps": None, "rate": None, "pools": []}
        self.tally: dict[str, list[int]] = {}  # suite -> [successes, episodes] of the current run()
        self.done = 0  # episodes finished in the current run()
        self.staleness: list[int] = []  # lag of each episode finished in the current run()
        self._ran_with: dict[str, int] = {}  # episode id -> the weights version its worker held at dispatch
        self.workers: dict[str, _Worker] = {}
        self._names = (f"w{i}" for i in itertools.count())
        self.published: tuple[int, object] | None = None  # (version, ObjectRef of the state dict)
        # the broadcast channel: members' (id, pid), their spec (None: these members use the object store)
        self._channel: tuple[tuple, object | None] | None = None
        self._channel_members: list[_Worker] = []
        self.reruns = 0
        self.scale(cfg.rollout.workers)

    # ---- workers ------------------------------------------------------------------------------
    def scale(self, n: int) -> None:
        """Run ``n`` workers: start new ones, or retire the newest (each leaves once its episodes end)."""
        active = [w for w in self.workers.values() if not w.retiring]
        for _ in range(n - len(active)):
            wid = next(self._names)
            handle = remote_worker(self.cfg, wid, self.pools, self.buffer, model_path=self.model_path)
            self.workers[wid] = _Worker(wid, handle, ready_ref=handle.version.remote(), pools_gen=self._pools_gen)
        for w in sorted(active, key=lambda w: w.started)[n:] if n < len(active) else []:
            w.retiring = True
        self._reap()
        metrics.fleet_size(self.size, len(self.pools))

    def _reap(self) -> None:
        for w in [w for w in self.workers.values() if w.retiring and w.inflight == 0]:
            ray.kill(w.handle, no_restart=True)
            del self.workers[w.id]
        self._reap_pools()

    # ---- browser pools ------------------------------------------------------------------------
    def _new_pool(self):
        nice = {"env_vars": {"RAY_worker_niceness": str(self.cfg.rollout.niceness)}}
        return remote_pool(self.cfg.env, num_cpus=self.cfg.rollout.pool_cpus, runtime_env=nice,
                           resources=self.cfg.ray.placement.browser_pool)

    def scale_browsers(self, n: int) -> None:
        """Run ``n`` BrowserPool actors: start new ones, or retire the newest. Every worker draws contexts from
        the new set before its next episode; a retired pool is shut down once its running episodes end."""
        if n < 1:
            raise ValueError(f"the fleet needs at least one browser pool, not {n}")
        if n == len(self.pools):
            return
        while len(self.pools) < n:
            self.pools.append(self._new_pool())
        while len(self.pools) > n:
            self._retired_pools[self.pools.pop()] = None
        self._pools_gen += 1
        for w in self.workers.values():
            if w.ready_ref is None and not w.retiring:
                self._send_pools(w)
        metrics.fleet_size(self.size, len(self.pools))
        log.info("browser pools: %d (%d retiring)", len(self.pools), len(self._retired_pools))

    def _send_pools(self, w: _Worker) -> None:
        """Tell ``w`` the current pools (ordered before any episode handed to it after this call)."""
        w.handle.set_pools.remote(self.pools)
        w.pools_gen = self._pools_gen

    def _reap_pools(self) -> None:
        """Shut down retired pools whose episodes have all ended (asked without blocking)."""
        for pool, ref in list(self._retired_pools.items()):
            if ref is None:
                self._retired_pools[pool] = pool.episodes.remote()
                continue
            if not ray.wait([ref], timeout=0)[0]:
                continue
            try:
                busy = bool(ray.get(ref))
            except _WORKER_LOST:
                busy = False
            if busy:
                self._retired_pools[pool] = pool.episodes.remote()
                continue
            del self._retired_pools[pool]
            pool.shutdown.remote()
            ray.kill(pool, no_restart=True)

    # ---- following webrl scale, posting webrl status ------------------------------------------
    def follow_control(self) -> None:
        """Apply the counts ``webrl scale`` asked for (polled at most every second), post the live status."""
        if self.control is None:
            return
        wanted = self.control.tick(self.status)
        if wanted.get("rollout") and wanted["rollout"] != self.size:
            log.info("webrl scale: %d -> %d rollout workers", self.size, wanted["rollout"])
            self.scale(wanted["rollout"])
        if wanted.get("browsers") and wanted["browsers"] != len(self.pools):
            log.info("webrl scale: %d -> %d browser pools", len(self.pools), wanted["browsers"])
            self.scale_browsers(wanted["browsers"])

    def status(self) -> dict:
        """The fleet's live view for ``webrl status`` (no blocking call: pool health is fetched in the background)."""
        workers = [w for w in self.workers.values()]
        return {
            "episodes": {"done": self.done, "running": sum(w.inflight for w in workers)},
            "success": {suite: {"successes": k, "episodes": n} for suite, (k, n) in sorted(self.tally.items())},
            "staleness": {"last": self.staleness[-1] if self.staleness else None,
                          "max": max(self.staleness) if self.staleness else None},
            "env_steps_per_s": self._poll_pools(),
            "workers": {"active": self.size, "retiring": sum(w.retiring for w in workers),
                        "restarting": sum(w.ready_ref is not None and not w.retiring for w in workers),
                        "deaths": sum(w.lost for w in workers), "episode_reruns": self.reruns,
                        "versions": sorted({w.version for w in workers if not w.retiring})},
            "pools": {"active": len(self.pools), "retiring": len(self._retired_pools),
                      "health": self._pool_health["pools"]},
        }

    def _poll_pools(self) -> float | None:
        """Env steps per second across the pools, from their health counters (refreshed every ~2 s)."""
        h, now = self._pool_health, time.monotonic()
        if h["refs"] is not None and ray.wait(h["refs"], num_returns=len(h["refs"]), timeout=0)[0] == h["refs"]:
            pools = []
            for ref in h["refs"]:
                try:
                    pools.append(ray.get(ref))
                except Exception as e:  # noqa: BLE001 - a pool restarting: say so
                    pools.append({"alive": False, "error": str(e).splitlines()[0] if str(e) else repr(e)})
            steps = sum(p.get("steps", 0) for p in pools)
            if h["steps"] is not None and now > h["at"]:
                h["rate"] = round(max(steps - h["steps"], 0) / (now - h["at"]), 2)
            h.update(refs=None, steps=steps, at=now, pools=[
                {k: p.get(k) for k in ("alive", "running_episodes", "free_contexts", "restarts", "error") if k in p}
                for p in pools])
        if h["refs"] is None and now - h["at"] >= 2.0:
            h["refs"] = [p.health.remote() for p in self.pools]
        return h["rate"]

    def wait_ready(self, timeout_s: float = 600) -> None:
        """Block until every worker has started (loaded its model) and holds the latest weights."""
        deadline = time.time() + timeout_s
        while not all(self._usable(w) for w in self.workers.values() if not w.retiring):
            if time.time() > deadline:
                raise TimeoutError(f"rollout workers not ready within {timeout_s:.0f} s: does the cluster have "
                                   f"{self.cfg.rollout.worker_cpus} CPUs free per worker? (`ray status`)")
            time.sleep(0.2)

    @property
    def size(self) -> int:
        return sum(not w.retiring for w in self.workers.values())

    def publish(self, weights, version: int) -> None:
        """Make ``version`` the latest policy: put it in the object store once, push it to every worker;
        workers that join or restart later pull it before their next episode."""
        ref = weights if isinstance(weights, ray.ObjectRef) else ray.put(weights)
        self.published = (version, ref)
        refs = {w.id: w.handle.load_weights.remote(ref, version) for w in self.workers.values()}
        for wid, r in refs.items():
            try:
                self.workers[wid].version = ray.get(r)
            except _WORKER_LOST:
                self.workers[wid].version = 0

    # ---- broadcast weight sync (actors/weight_broadcast.py) -----------------------------------
    def weight_channel(self, sender) -> bool:
        """Whether the next publish goes by broadcast, with ``sender`` (learner rank 0's actor: ``weight_device``,
        ``open_weight_store``, ``join_weight_channel``) as rank 0 and the live workers as ranks 1..N.
        ``rollout.weight_sync=auto`` broadcasts when the learner is on CUDA. The channel is formed here, again
        whenever its members changed; a learner sharing a GPU with an engine uses the object store."""
        mode = self.cfg.rollout.weight_sync
        if mode == "object_store":
            return False
        learner_device = ray.get(sender.weight_device.remote())
        if mode == "auto" and learner_device is None:
            return False
        members = [w for w in self.workers.values() if self._usable(w)]
        if not members:
            return False
        infos = ray.get([w.handle.weight_member.remote() for w in members])
        key = tuple((w.id, info["pid"]) for w, info in zip(members, infos))  # a restarted worker has a new pid
        if self._channel is None or self._channel[0] != key:
            self._channel_members = members
            try:
                self._channel = (key, self._form_channel(sender, learner_device, members, [i["device"] for i in infos]))
            except Exception as e:  # noqa: BLE001 - a member died while joining: this publish uses the object store
                log.warning("weight sync: could not form the broadcast channel (%s); this publish goes through the "
                            "object store", str(e).splitlines()[0] if str(e) else repr(e))
                self._channel = None
                return False
        return self._channel[1] is not None

    def _form_channel(self, sender, learner_device: str | None, members: list[_Worker], devices: list):
        """The channel's spec once every member has joined it; None where these members cannot use NCCL."""
        from actors.weight_broadcast import ChannelSpec

        r = self.cfg.rollout
        if learner_device is not None:
            shared = [w.id for w, d in zip(members, devices) if d == learner_device]
            if shared:
                log.warning("weight sync: learner rank 0 and worker(s) %s share the GPU %s; NCCL cannot connect a GPU "
                            "to itself, so weights go through the object store", shared, learner_device)
                return None
            if None in devices:
                log.warning("weight sync: the learner is on CUDA but worker(s) %s have no GPU; NCCL needs one at each "
                            "end, so weights go through the object store",
                            [w.id for w, d in zip(members, devices) if d is None])
                return None
        world = len(members) + 1
        host, port = ray.get(sender.open_weight_store.remote(world, r.weight_sync_timeout_s))
        spec = ChannelSpec(host, port, world, "nccl" if learner_device else "gloo", int(r.weight_bucket_mb * 2**20),
                           r.weight_sync_timeout_s)
        ray.get([sender.join_weight_channel.remote(spec)]
                + [w.handle.join_weight_channel.remote(spec, i + 1) for i, w in enumerate(members)])
        log.info("weight sync: %s broadcast channel formed at %s:%d with %d workers (%s MiB buckets)",
                 spec.backend, host, port, len(members), r.weight_bucket_mb)
        return spec

    def receive_broadcast(self, sends: list) -> tuple[int, object, float]:
        """Run one broadcast round: the channel's workers receive into their engines while the learner sends
        (``sends``: its ranks' ``broadcast_weights`` calls, already started; rank 0's resolves to (version,
        [ObjectRef of the same weights], error or None)). A worker that missed the round loads the object-store
        copy; a failed round drops the channel, formed again at the next publish. Returns (version, ObjectRef,
        ``time.perf_counter()`` when the last engine held it)."""
        recv = {w.id: w.handle.receive_weights.remote() for w in self._channel_members}
        ray.wait(list(recv.values()), num_returns=len(recv))
        received_at = time.perf_counter()
        version, (ref,), error = ray.get(sends)[0]
        self.published = (version, ref)
        if error:
            log.warning("weight sync: broadcast of version %d failed (%s); the workers load it from the object store",
                        version, error)
            self._channel = None
        for wid, r in recv.items():
            w = self.workers.get(wid)
            try:
                received = ray.get(r)
            except Exception as e:  # noqa: BLE001 - it died or its engine refused: the object-store copy follows
                log.warning("weight sync: worker %s did not receive version %d by broadcast (%s)", wid, version,
                            str(e).splitlines()[0] if str(e) else repr(e))
                self._channel, received = None, 0
            if w is not None:
                w.version = received  # behind the published version: _usable hands it the object-store copy
        return version, ref, received_at

    def _usable(self, w: _Worker) -> bool:
        if w.retiring:
            return False
        if w.ready_ref is not None:
            ready, _ = ray.wait([w.ready_ref], timeout=0)
            if not ready:
                return False
            try:
                w.version = ray.get(w.ready_ref)
            except _WORKER_LOST:
                w.ready_ref = w.handle.version.remote()  # still restarting: ask again
                return False
            w.ready_ref = None
        if self.published and w.version < self.published[0]:
            version, ref = self.published
            w.version = version  # load_weights runs before any episode queued after it on this actor
            w.handle.load_weights.remote(ref, version)
        if w.pools_gen != self._pools_gen:  # it joined or restarted with an older set of pools
            self._send_pools(w)
        return True

    # ---- episodes -----------------------------------------------------------------------------
    def capacity(self) -> int:
        per_worker = self.cfg.rollout.episodes_per_worker * max(self.size, 1)
        return min(per_worker, len(self.pools) * self.cfg.env.browser.contexts)

    def run(self, specs: Iterable[EpisodeSpec], on_result: Callable[[EpisodeSummary], None] | None = None,
            timeout_s: float | None = None) -> list[EpisodeSummary]:
        """Run every episode once; returns their summaries in the order they finished."""
        queue = deque(specs)
        total = len(queue)
        if self.size == 0 and queue:
            raise RuntimeError("the fleet has no rollout workers: set rollout.workers >= 1 (or scale(n))")
        inflight: dict[object, tuple[EpisodeSpec, _Worker]] = {}
        results: dict[str, EpisodeSummary] = {}
        deadline = time.time() + timeout_s if timeout_s else None
        self.tally, self.done, self.staleness = {}, 0, []
        while queue or inflight:
            self.follow_control()
            self._dispatch(queue, inflight)
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=0.5) if inflight else ([], [])
            for ref in ready:
                spec, w = inflight.pop(ref)
                w.inflight -= 1
                summary = self._collect(ref, spec, w, queue)
                if summary is not None and summary.id not in results:
                    results[summary.id] = summary
                    self._count(spec, summary)
                    if on_result:
                        on_result(summary)
            self._reap()
            if not inflight and queue and not any(self._usable(w) for w in self.workers.values()):
                time.sleep(0.2)  # every worker is restarting
            if deadline and time.time() > deadline:
                raise TimeoutError(f"{len(results)} of {total} episodes finished within {timeout_s:.0f} s")
        return list(results.values())

    def _dispatch(self, queue: deque, inflight: dict) -> None:
        per_worker = self.cfg.rollout.episodes_per_worker
        while queue and len(inflight) < self.capacity():
            usable = [w for w in self.workers.values() if w.inflight < per_worker and self._usable(w)]
            if not usable:
                return
            w = min(usable, key=lambda w: w.inflight)
            spec = queue.popleft()
            if self.published:
                spec = spec.model_copy(update={"min_version": self.published[0] - self.cfg.rollout.max_staleness})
            inflight[w.handle.run.remote(spec)] = (spec, w)
            self._ran_with[spec.id] = w.version
            w.inflight += 1

    def _count(self, spec: EpisodeSpec, summary: EpisodeSummary) -> None:
        """Tally a finished episode for the status: success per suite, and its staleness."""
        self.done += 1
        c = self.tally.setdefault(suite_of(summary.task_id), [0, 0])
        c[0] += summary.success
        c[1] += 1
        ran_with = self._ran_with.pop(spec.id, None)
        if self.published and ran_with is not None:
            self.staleness.append(max(self.published[0] - ran_with, 0))
            metrics.episode_staleness(self.staleness[-1], spec.mode)

    def _collect(self, ref, spec: EpisodeSpec, w: _Worker, queue: deque) -> EpisodeSummary | None:
        try:
            return ray.get(ref)
        except _WORKER_LOST as e:
            if w.ready_ref is None:  # the first of its calls to fail: one death
                w.lost += 1
                w.ready_ref = w.handle.version.remote()  # Ray restarts it; wait for it to answer
                w.version, w.pools_gen = 0, -1  # it comes back with the weights and pools it was started with
            if spec.attempt < self.cfg.rollout.max_attempts:
                self.reruns += 1
                log.warning("worker %s died during episode %s; running it again elsewhere", w.id, spec.id)
                queue.appendleft(spec.model_copy(update={"attempt": spec.attempt + 1}))
                return None
            return self._give_up(spec, w, f"its rollout worker died {spec.attempt} times: {type(e).__name__}")
        except Exception as e:  # noqa: BLE001 - a bug in the worker: record the episode as failed, say why
            return self._give_up(spec, w, f"the rollout worker failed: {str(e).splitlines()[-1] if str(e) else e!r}")

    def _give_up(self, spec: EpisodeSpec, w: _Worker, reason: str) -> EpisodeSummary:
        """Store a failed trajectory for an episode that cannot run, so that it is reported, never lost."""
        log.error("episode %s failed: %s", spec.id, reason)
        traj = failed_trajectory(spec, EpisodeStatus.error, reason, worker_id=w.id)
        stored = True
        if self.buffer is not None:
            stored = ray.get(self.buffer.add.remote(traj)) if hasattr(self.buffer.add, "remote") else self.buffer.add(traj)
        return EpisodeSummary.of(traj, stored)

    def info(self) -> list[dict]:
        out = []
        for w in self.workers.values():
            try:
                out.append(ray.get(w.handle.info.remote(), timeout=5) | {"lost": w.lost, "retiring": w.retiring})
            except Exception as e:  # noqa: BLE001
                out.append({"worker_id": w.id, "error": str(e).splitlines()[0], "lost": w.lost})
        return out

    def shutdown(self) -> None:
        for w in self.workers.values():
            try:
                ray.get(w.handle.shutdown.remote(), timeout=30)
            except Exception:  # noqa: BLE001
                pass
            ray.kill(w.handle, no_restart=True)
        self.workers.clear()
        for p in self.pools + list(self._retired_pools):
            try:
                ray.get(p.shutdown.remote(), timeout=30)
            except Exception:  # noqa: BLE001
                pass
            ray.kill(p, no_restart=True)
