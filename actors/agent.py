"""The agent's episode loop: page -> WebRL rounds prompt -> engine -> action -> browser, until the task
ends, the step limit, or an early stop (paper: 30 steps, 5 unparsable actions in a row, the same
action 5 times in a row). Nothing in here raises for what the model wrote or the page did: every
episode ends as a :class:`~webrl.types.Trajectory` whose outcome says why it ended."""

from __future__ import annotations

import time
from typing import Protocol

from actors.engine import Engine, EngineError, Sampling
from actors.prompt import Round, build_prompt
from envpool.action_grammar import action_grammar
from envpool.actions import format_action, parse_action
from envpool.suites.adhoc import AdhocSuite, is_url
from webrl.config import WebRLConfig
from webrl.types import (ActionKind, EnvStep, EpisodeRecord, EpisodeSpec, EpisodeStatus, Observation, Outcome,
                         OutcomeSource, Step, Task, Trajectory)


class Env(Protocol):
    """What the loop needs of a browser pool (a :class:`envpool.pool.BrowserPool` or :class:`RemotePool`)."""

    async def reset(self, task_id: str | Task, seed: int | None = None) -> EpisodeRecord: ...
    async def step(self, episode_id: str, action) -> EnvStep: ...
    async def close(self, episode_id: str) -> EpisodeRecord: ...


class RemotePool:
    """A BrowserPool Ray actor seen through the :class:`Env` protocol."""

    def __init__(self, handle):
        self.handle = handle

    async def reset(self, task_id: str | Task, seed: int | None = None) -> EpisodeRecord:
        return await self.handle.reset.remote(task_id, seed)

    async def step(self, episode_id: str, action) -> EnvStep:
        return await self.handle.step.remote(episode_id, action)

    async def close(self, episode_id: str) -> EpisodeRecord:
        return await self.handle.close.remote(episode_id)


def suite_of(task_id: str) -> str:
    """The suite a task id belongs to: the part before the slash, or the ad-hoc URL suite."""
    return AdhocSuite.name if is_url(task_id) else task_id.split("/", 1)[0]


def failed_trajectory(spec: EpisodeSpec, status: EpisodeStatus, reason: str, *, worker_id: str = "",
                      model: str = "") -> Trajectory:
    """The record of an episode that could not be played (its worker or browser pool failed): stored
    like any other, so it is reported and never silently lost."""
    return Trajectory(id=spec.id, task_id=spec.task_id, suite=suite_of(spec.task_id), seed=spec.seed,
                      phase=spec.phase, mode=spec.mode, attempt=spec.attempt, worker_id=worker_id, model=model,
                      outcome=Outcome(status=status, reason=reason, source=OutcomeSource.none))


def early_stop(actions: list, max_parse_failures: int, max_repeated: int) -> str | None:
    """Why the episode should stop now, judged on the actions so far (WebArena's early-stop rules
    that WebRL keeps): the last ``max_parse_failures`` unparsable, or the last ``max_repeated`` the same."""
    tail = actions[-max_parse_failures:]
    if len(tail) == max_parse_failures and all(a.kind is ActionKind.invalid for a in tail):
        return f"{max_parse_failures} unparsable actions in a row (last: {tail[-1].error})"
    tail = actions[-max_repeated:]
    if len(tail) == max_repeated and tail[0].kind is not ActionKind.invalid \
            and len({format_action(a) for a in tail}) == 1:
        return f"the same action {max_repeated} times in a row: {format_action(tail[0])}"
    return None


class Agent:
    def __init__(self, engine: Engine, cfg: WebRLConfig, *, worker_id: str = "", model: str = ""):
        self.engine, self.cfg, self.worker_id, self.model = engine, cfg, worker_id, model
        self.prompt_budget = engine.max_model_len - cfg.rollout.max_new_tokens

    def sampling(self, mode: str, obs: Observation | None = None) -> Sampling:
        """How to sample the next action: the mode's temperature, and under ``rollout.constrained`` the action
        grammar with element ids below the page's element count (any id when the page reports none)."""
        r = self.cfg.rollout
        grammar = action_grammar(r.max_new_tokens, (obs.element_count or None) if obs else None) if r.constrained else None
        return Sampling(temperature=r.eval_temperature if mode == "eval" else r.temperature, top_p=r.top_p,
                        max_tokens=r.max_new_tokens, grammar=grammar)

    async def run(self, env: Env, spec: EpisodeSpec) -> Trajectory:
        t0 = time.perf_counter()
        traj = Trajectory(id=spec.id, task_id=spec.task_id, suite=suite_of(spec.task_id), seed=spec.seed, phase=spec.phase,
                          mode=spec.mode, attempt=spec.attempt, worker_id=self.worker_id, model=self.model)
        record = await env.reset(spec.task or spec.task_id, spec.seed)  # a generated task travels whole
        traj.instruction = record.instruction
        if record.status is not EpisodeStatus.running:  # the start page did not load
            traj.outcome = Outcome(status=record.status, reason=record.reason, source=OutcomeSource.none)
            return self._finish(traj, t0)
        traj.final_observation = record.first_observation
        stop = await self._loop(env, record, traj)
        final = await env.close(record.episode_id)
        status, reason = stop or (final.status, final.reason)
        traj.answer = final.answer
        traj.outcome = Outcome(reward=final.reward, source=final.reward_source, status=status, reason=reason,
                               checks=final.reward_checks)
        return self._finish(traj, t0)

    async def _loop(self, env: Env, record: EpisodeRecord, traj: Trajectory) -> tuple[EpisodeStatus, str] | None:
        """Play the episode; returns the status and reason of an early stop (None when the environment ended it)."""
        r = self.cfg.rollout
        obs, history = record.first_observation, []
        for _ in range(self.cfg.env.max_steps):
            prompt = build_prompt(self.engine.tokenizer, traj.instruction, history, obs, self.prompt_budget)
            g0 = time.perf_counter()
            try:
                gen = await self.engine.generate(prompt.token_ids, self.sampling(traj.mode, obs))
            except (EngineError, ValueError) as e:
                return EpisodeStatus.error, f"the policy could not generate: {e}"
            e0 = time.perf_counter()
            action = parse_action(gen.text)
            result = await env.step(record.episode_id, action)
            traj.steps.append(Step(
                observation=obs, prompt_token_ids=prompt.token_ids, prompt_dropped_rounds=prompt.dropped_rounds,
                action_text=gen.text, action_token_ids=gen.token_ids, logprobs=gen.logprobs,
                policy_version=gen.version, action=action, reward=result.reward,
                generate_s=e0 - g0, env_s=time.perf_counter() - e0,
            ))
            history.append(Round(obs, gen.text))
            obs = traj.final_observation = result.observation
            if result.done:
                return None
            stop = early_stop([s.action for s in traj.steps], r.max_parse_failures, r.max_repeated_actions)
            if stop:
                return EpisodeStatus.truncated, stop
        return None  # the pool ends the episode at env.max_steps itself

    @staticmethod
    def _finish(traj: Trajectory, t0: float) -> Trajectory:
        traj.timings = {"generate_s": sum(s.generate_s for s in traj.steps), "env_s": sum(s.env_s for s in traj.steps),
                        "total_s": time.perf_counter() - t0}
        return traj
