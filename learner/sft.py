"""Supervised warm start (``webrl sft``): WebRL begins from a policy fine-tuned on demonstrations.

Demonstrations are JSONL files of episodes: trajectories as the replay buffer stores them, or episode
records as ``webrl env demo --save`` writes them (scripted MiniWoB++ policies). Only each step's page
and action text are used: the prompt is rendered again for the model being trained, with the same
builder the rollouts use, so a demonstration file serves any model. The target of each step is the
action's tokens followed by the end-of-turn token, exactly what the engine samples when it stops.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from actors.prompt import Round, build_prompt
from envpool.actions import format_action
from learner.learner import Batch
from webrl.types import ActionKind, EpisodeRecord, Observation, Trajectory


@dataclass
class Demo:
    instruction: str
    rounds: list[tuple[Observation, str]]  # (the page the action was taken on, the action text)
    task_id: str = ""


def _from_record(rec: EpisodeRecord) -> Demo:
    pages = [rec.first_observation] + [s.observation for s in rec.steps[:-1]]
    return Demo(rec.instruction, [(obs, format_action(s.action)) for obs, s in zip(pages, rec.steps)
                                  if s.action.kind is not ActionKind.invalid], rec.task_id)


def _from_trajectory(t: Trajectory) -> Demo:
    return Demo(t.instruction, [(s.observation, s.action_text) for s in t.steps
                                if s.action.kind is not ActionKind.invalid], t.task_id)


def load_demos(paths: list[str | Path], successful_only: bool = True) -> list[Demo]:
    """Episodes from JSONL files (or folders holding ``trajectories.jsonl`` / ``demos.jsonl``); episodes
    that failed are left out unless ``successful_only`` is False. Unreadable lines are errors that name
    the file and line."""
    demos = []
    for path in paths:
        path = Path(path)
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise FileNotFoundError(f"no demonstrations at {path}: give JSONL files of trajectories "
                                    "(a run's trajectories.jsonl) or of episode records (webrl env demo --save DIR)")
        for file in files:
            for n, line in enumerate(file.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                    if "first_observation" in raw:
                        rec = EpisodeRecord.model_validate(raw)
                        demo, ok = _from_record(rec), rec.reward > 0
                    else:
                        traj = Trajectory.model_validate(raw)
                        demo, ok = _from_trajectory(traj), traj.success
                except ValueError as e:
                    raise ValueError(f"{file}:{n} is neither a trajectory nor an episode record: {str(e).splitlines()[0]}") from None
                if demo.rounds and (ok or not successful_only):
                    demos.append(demo)
    return demos


def demo_samples(demos: list[Demo], tokenizer, max_tokens: int) -> list[tuple[list[int], int]]:
    """(token ids, prompt length) per step: the rounds prompt within ``max_tokens`` then the action
    and the end-of-turn token."""
    eos = tokenizer.eos_token_id
    samples = []
    for demo in demos:
        history: list[Round] = []
        for obs, action in demo.rounds:
            target = tokenizer(action, add_special_tokens=False).input_ids + [eos]
            prompt = build_prompt(tokenizer, demo.instruction, history, obs, max_tokens - len(target))
            samples.append((prompt.token_ids + target, len(prompt.token_ids)))
            history.append(Round(obs, action))
    return samples


def sft_batches(samples: list[tuple[list[int], int]], batch_size: int, pad_id: int, seed: int = 0) -> list[Batch]:
    """Shuffled, right-padded batches with the action tokens marked."""
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = [samples[i] for i in order[start:start + batch_size]]
        width = max(len(ids) for ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        action = torch.zeros_like(input_ids)
        for row, (ids, prompt_len) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            action[row, prompt_len:len(ids)] = 1
        batches.append(Batch(input_ids, attention, action))
    return batches
