"""A gymnasium-style ``WebEnv`` (``reset``/``step``) over one BrowserPool slot.

Observations and actions are text: the simplified HTML, and an action in the WebRL grammar.
Give it a Ray ``BrowserPool`` actor handle to share a pool, or nothing to own a local pool.
"""

from __future__ import annotations

import asyncio
import threading

import gymnasium as gym
from gymnasium import spaces

from envpool.actions import MAX_ACTION_CHARS
from envpool.pool import BrowserPool
from webrl.config import EnvConfig


class _LoopThread:
    """An event loop in a daemon thread, so a local asyncio pool can be driven from sync code."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="webenv-loop").start()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)


class AnyText(spaces.Text):
    """A text space that holds any string up to ``max_length`` (gymnasium's ``Text`` wants a
    charset; pages and model outputs use all of Unicode). Samples are alphanumeric."""

    def contains(self, x) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


class WebEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, task_id: str, cfg: EnvConfig | None = None, pool=None):
        self.task_id = task_id
        self.cfg = cfg or EnvConfig()
        self.observation_space = AnyText(max_length=self.cfg.observation.max_chars)
        self.action_space = AnyText(max_length=MAX_ACTION_CHARS)
        self._owned = pool is None
        if self._owned:
            self._loop = _LoopThread()
            self._pool = BrowserPool(self.cfg)
        else:
            self._pool = pool
        self._episode: str | None = None

    def _call(self, method: str, *args):
        if self._owned:
            return self._loop.run(getattr(self._pool, method)(*args))
        import ray

        return ray.get(getattr(self._pool, method).remote(*args))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._episode is not None:
            self._call("close", self._episode)
        rec = self._call("reset", self.task_id, seed)
        self._episode = rec.episode_id
        obs = rec.first_observation.html if rec.first_observation else ""
        return obs, {"instruction": rec.instruction, "status": rec.status.value, "reason": rec.reason,
                     "observation": rec.first_observation, "episode_id": rec.episode_id}

    def step(self, action: str):
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        st = self._call("step", self._episode, action)
        terminated = st.status.value in ("done", "interrupted", "error", "timeout")
        truncated = st.status.value == "truncated"
        info = {"status": st.status.value, "error": st.observation.error, "notes": st.observation.notes,
                "action": st.action, "observation": st.observation}
        return st.observation.html, st.reward, terminated, truncated, info

    def close(self):
        if self._episode is not None:
            self._call("close", self._episode)
            self._episode = None
        if self._owned:
            self._loop.run(self._pool.shutdown())
            self._loop.stop()
            self._owned = False
