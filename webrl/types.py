"""Typed contracts shared by every subsystem (DESIGN.md §3)."""

from __future__ import annotations

import time
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field


class TaskOrigin(BaseModel):
    kind: str = "seed"  # seed | generated
    parent_ids: list[str] = Field(default_factory=list)
    phase: int | None = None


class Task(BaseModel):
    """One task of a suite. ``instruction`` may be ``None`` where the page writes it per seed (MiniWoB)."""

    id: str  # "<suite>/<name>", e.g. "miniwob/click-button"
    suite: str
    instruction: str | None = None
    start_url: str
    evaluator: dict[str, Any] | None = None  # generated tasks have none: the ORM judges them
    origin: TaskOrigin = Field(default_factory=TaskOrigin)
    oracle: list[str] | None = None  # action texts in our grammar that solve the task
    allowed_origins: list[str] = Field(default_factory=list)  # empty: the start URL's origin


class Observation(BaseModel):
    url: str
    html: str  # simplified HTML with integer ids on interactive elements
    element_count: int = 0  # elements that carry an id
    truncated: bool = False  # the page was cut to the budget
    error: str | None = None  # why the last action failed; shown to the agent on its next step
    notes: list[str] = Field(default_factory=list)  # dialogs answered, navigations blocked, ...


class ActionKind(str, Enum):
    click = "click"
    type = "type"
    search = "search"
    hover = "hover"
    scroll_up = "scroll_up"
    scroll_down = "scroll_down"
    press_enter = "press_enter"
    select = "select"
    go_back = "go_back"
    go_forward = "go_forward"
    exit = "exit"
    invalid = "invalid"


class Action(BaseModel):
    kind: ActionKind
    element: int | None = None
    argument: str | None = None
    raw: str = ""  # the model's text, verbatim
    error: str | None = None  # for kind == invalid: what was wrong with the text


class EpisodeStatus(str, Enum):
    running = "running"
    done = "done"  # the task ended: page reported done, or the agent exited
    truncated = "truncated"  # max steps reached
    timeout = "timeout"  # the episode ran past its time limit, or an action hung past its own
    interrupted = "interrupted"  # the browser crashed under it
    error = "error"  # the start page could not be loaded, or the environment failed


class EnvStep(BaseModel):
    """What one action did: the action, the page after it, and the reward so far."""

    action: Action
    observation: Observation
    reward: float = 0.0
    status: EpisodeStatus = EpisodeStatus.running
    elapsed_s: float = 0.0

    @property
    def done(self) -> bool:
        return self.status is not EpisodeStatus.running


class OutcomeSource(str, Enum):
    page = "page"  # the task page's own reward (MiniWoB)
    rule = "rule"  # a rule evaluator (sandbox checks, WebArena string/url/program_html)
    orm = "orm"  # the outcome reward model
    none = "none"  # nothing judged it (the episode failed before it could be)


class EpisodeRecord(BaseModel):
    """Everything the environment knows of one episode; never dropped, even when the browser crashes."""

    episode_id: str
    task_id: str
    seed: int | None = None
    instruction: str = ""
    first_observation: Observation | None = None
    steps: list[EnvStep] = Field(default_factory=list)
    status: EpisodeStatus = EpisodeStatus.running
    reason: str | None = None  # why it ended, in words
    reward: float = 0.0
    answer: str | None = None  # exit(message=...)
    reward_source: OutcomeSource = OutcomeSource.page  # rule: the suite's evaluator judged the end state
    reward_checks: list[str] = Field(default_factory=list)  # the evaluator's checks, a line each, with reasons
    started_at: float = Field(default_factory=time.time)
    elapsed_s: float = 0.0


class Outcome(BaseModel):
    reward: float = 0.0
    source: OutcomeSource = OutcomeSource.page
    p_yes: float | None = None  # the ORM's probability of success, when it judged
    checks: list[str] = Field(default_factory=list)  # a rule evaluator's checks, a line each, with reasons
    status: EpisodeStatus = EpisodeStatus.done
    reason: str | None = None  # why the episode ended, in words

    @property
    def success(self) -> bool:
        return self.reward > 0


class Step(BaseModel):
    """One round of an episode: what the agent saw, what it wrote, and how likely its policy was to write it."""

    observation: Observation  # the page the action was chosen on
    prompt_token_ids: list[int]  # the prompt exactly as the engine saw it
    prompt_dropped_rounds: int = 0  # oldest rounds left out to fit the context
    action_text: str  # the model's raw output
    action_token_ids: list[int]
    logprobs: list[float]  # behaviour log-prob of each action token (temperature 1, before any sampling change)
    policy_version: int  # weights version that produced the action
    action: Action  # the parsed action (kind invalid, with the reason, when the text did not parse)
    reward: float = 0.0  # the page's reward after the action
    generate_s: float = 0.0
    env_s: float = 0.0


class Trajectory(BaseModel):
    """One finished episode: the unit the replay buffer stores (one JSON line each)."""

    id: str  # assigned before the episode starts, so a rerun after a crash keeps it: stored at most once
    task_id: str
    suite: str
    seed: int | None = None
    instruction: str = ""
    steps: list[Step] = Field(default_factory=list)
    final_observation: Observation | None = None
    answer: str | None = None  # exit(message=...)
    outcome: Outcome = Field(default_factory=Outcome)
    phase: int = 0
    worker_id: str = ""
    attempt: int = 1  # 2+ when an earlier attempt was lost to a crashed worker or browser
    mode: str = "train"  # train | eval
    model: str = ""
    created_at: float = Field(default_factory=time.time)
    timings: dict[str, float] = Field(default_factory=dict)  # generate_s, env_s, total_s

    @property
    def success(self) -> bool:
        return self.outcome.success

    @property
    def policy_versions(self) -> list[int]:
        return sorted({s.policy_version for s in self.steps})


class EpisodeSpec(BaseModel):
    """One episode to run, as the rollout fleet hands it to a worker. ``id`` becomes the trajectory's id."""

    id: str
    task_id: str
    seed: int | None = None
    phase: int = 0
    mode: str = "train"  # train (temperature 1) | eval (greedy)
    attempt: int = 1
    min_version: int = 0  # the worker's weights must be at least this version (max_staleness admission)
    task: Task | None = None  # the task itself, for tasks no suite lists (generated by the curriculum); else None


class EpisodeSummary(BaseModel):
    """What a worker reports back for one episode; the full trajectory went to the replay buffer."""

    id: str
    task_id: str
    seed: int | None = None
    reward: float = 0.0
    success: bool = False
    status: EpisodeStatus = EpisodeStatus.done
    reason: str | None = None
    steps: int = 0
    attempt: int = 1
    worker_id: str = ""
    stored: bool = True  # False: the buffer had this id already (a rerun of an episode that was stored)
    generated_tokens: int = 0
    elapsed_s: float = 0.0

    @classmethod
    def of(cls, traj: "Trajectory", stored: bool = True) -> "EpisodeSummary":
        return cls(id=traj.id, task_id=traj.task_id, seed=traj.seed, reward=traj.outcome.reward, success=traj.success,
                   status=traj.outcome.status, reason=traj.outcome.reason, steps=len(traj.steps), attempt=traj.attempt,
                   worker_id=traj.worker_id, stored=stored, elapsed_s=traj.timings.get("total_s", 0.0),
                   generated_tokens=sum(len(s.action_token_ids) for s in traj.steps))
