"""The outcome reward model (ORM, DESIGN.md §1 item 2): a causal LM reads (instruction, action history,
final page) and answers YES or NO.

    p_yes = P(YES) / (P(YES) + P(NO))     from the next-token logits of the two answers' first tokens
    reward = 1 if P(YES) >= P(NO) else 0  (p_yes >= 0.5)

Generated tasks have no rule checker, so the ORM is their only reward; ``orm.use`` decides for the
others (:func:`needs_orm`). Any Hugging Face causal LM can judge: the rollout model zero-shot, or a
checkpoint of ``webrl orm train`` (reward/orm_train.py), whose manifest brings its own answer words.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch
from torch import Tensor

from actors.prompt import Prompt
from reward.orm_prompt import orm_prompt
from webrl.config import OrmConfig, WebRLConfig
from webrl.types import Outcome, OutcomeSource, Task, Trajectory

MANIFEST = "manifest.json"


def answer_token_ids(tokenizer, yes: str, no: str) -> list[int]:
    """[NO id, YES id]: the first token of each answer word (the token the model writes first)."""
    ids = []
    for word in (no, yes):
        tokens = tokenizer(word, add_special_tokens=False).input_ids
        if not tokens:
            raise ValueError(f"the answer word {word!r} has no tokens in this tokenizer (set orm.yes_word/orm.no_word)")
        ids.append(tokens[0])
    if ids[0] == ids[1]:
        raise ValueError(f"the answers {yes!r} and {no!r} start with the same token ({ids[0]}): the ORM could not "
                         "tell them apart; set orm.yes_word and orm.no_word to words with different first tokens")
    return ids


def right_pad(sequences: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """(input_ids, attention_mask) of right-padded sequences."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(sequences):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        attention[row, :len(ids)] = 1
    return input_ids, attention


def answer_logits(model, input_ids: Tensor, attention_mask: Tensor, answer_ids: list[int]) -> Tensor:
    """[batch, 2] logits of (NO, YES) for the token after each row's last real token (right padding).
    The vocabulary projection runs on those positions only."""
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    last = attention_mask.sum(-1) - 1
    read = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return model.get_output_embeddings()(read).float()[:, answer_ids]


def p_yes_of(logits: Tensor) -> Tensor:
    """P(YES) / (P(YES) + P(NO)) from [batch, 2] (NO, YES) logits."""
    return torch.softmax(logits.float(), dim=-1)[:, 1]


def orm_reward(p_yes: float) -> float:
    """1 when P(YES) >= P(NO), i.e. p_yes >= 0.5; else 0."""
    return 1.0 if p_yes >= 0.5 else 0.0


def orm_outcome(p_yes: float, before: Outcome) -> Outcome:
    """The ORM's verdict as the trajectory's outcome; the episode's status and reason stay, and a rule
    checker's verdict, if one judged, is kept as a line of ``checks``."""
    checks = list(before.checks)
    if before.source in (OutcomeSource.rule, OutcomeSource.page):
        checks.append(f"{before.source.value} reward {before.reward:g} (replaced by the ORM's)")
    return Outcome(reward=orm_reward(p_yes), source=OutcomeSource.orm, p_yes=p_yes, checks=checks,
                   status=before.status, reason=before.reason)


def needs_orm(task: Task | None, outcome: Outcome, use: str) -> bool:
    """Whether the ORM judges an episode: always for a generated task without an evaluator; for the others
    as ``orm.use`` says (orm: always; rule_else_orm: when no checker judged it; rule: never)."""
    if task is not None and task.origin.kind == "generated" and not task.evaluator:
        return True
    if use == "orm":
        return True
    return use == "rule_else_orm" and outcome.source not in (OutcomeSource.rule, OutcomeSource.page)


def read_orm_manifest(path: str | Path) -> dict | None:
    """The manifest of a ``webrl orm train`` checkpoint; None for any other model directory."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        return None
    manifest = json.loads(file.read_text())
    return manifest if manifest.get("kind") == "orm" else None


class OutcomeRewardModel:
    """Scores trajectories with a causal LM: prompts within ``orm.budget_tokens``, forward passes of
    ``orm.micro_batch`` prompts (similar lengths together), p_yes per trajectory in the given order."""

    def __init__(self, model, tokenizer, cfg: OrmConfig, precision: str = "auto"):
        from learner.learner import autocast_dtype

        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.answer_ids = answer_token_ids(tokenizer, cfg.yes_word, cfg.no_word)
        self.autocast = autocast_dtype(precision)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @classmethod
    def load(cls, cfg: WebRLConfig, model: str | Path | None = None, device: str | None = None) -> "OutcomeRewardModel":
        """The ORM at ``model`` (default ``orm.model``, else ``rollout.model``); a ``webrl orm train``
        checkpoint's manifest sets the answer words it was trained with."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from actors.model_store import resolve_model

        path = resolve_model(str(model or cfg.orm.model or cfg.rollout.model))
        orm_cfg = cfg.orm
        manifest = read_orm_manifest(path)
        if manifest:
            trained = manifest.get("orm_config", {})
            orm_cfg = orm_cfg.model_copy(update={k: trained[k] for k in ("yes_word", "no_word") if k in trained})
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
        return cls(lm, AutoTokenizer.from_pretrained(path), orm_cfg, cfg.learner.precision)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt(self, traj: Trajectory) -> Prompt:
        return orm_prompt(self.tokenizer, traj, self.cfg.budget_tokens, yes=self.cfg.yes_word, no=self.cfg.no_word)

    @torch.no_grad()
    def score_prompts(self, prompts: list[list[int]]) -> list[float]:
        """p_yes of each prompt (token ids ending where the answer goes), in the given order."""
        out = [0.0] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(order), self.cfg.micro_batch):
                chunk = order[start:start + self.cfg.micro_batch]
                ids, mask = right_pad([prompts[i] for i in chunk], self.pad_id)
                ctx = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
                with ctx:
                    logits = answer_logits(self.model, ids.to(self.device), mask.to(self.device), self.answer_ids)
                for i, p in zip(chunk, p_yes_of(logits).tolist()):
                    out[i] = p
        finally:
            self.model.train(was_training)
        return out

    def p_yes(self, trajs: list[Trajectory]) -> list[float]:
        """P(YES) / (P(YES) + P(NO)) of each trajectory."""
        return self.score_prompts([self.prompt(t).token_ids for t in trajs])

    def judge(self, trajs: list[Trajectory], tasks: list[Task | None] | None = None,
              use: str | None = None) -> list[Trajectory]:
        """Copies of the trajectories, those the ORM judges (:func:`needs_orm`, ``use`` default
        ``orm.use``) with the ORM's outcome; all of them scored in one batch."""
        use = use or self.cfg.use
        tasks = tasks if tasks is not None else [None] * len(trajs)
        if len(tasks) != len(trajs):
            raise ValueError(f"{len(trajs)} trajectories but {len(tasks)} tasks")
        picked = [i for i, (t, task) in enumerate(zip(trajs, tasks)) if needs_orm(task, t.outcome, use)]
        scores = dict(zip(picked, self.p_yes([trajs[i] for i in picked]))) if picked else {}
        return [t.model_copy(update={"outcome": orm_outcome(scores[i], t.outcome)}) if i in scores else t
                for i, t in enumerate(trajs)]


def judge_trajectory(orm: OutcomeRewardModel, traj: Trajectory, task: Task | None = None,
                     use: str | None = None) -> Trajectory:
    """The trajectory with ``Outcome(source=orm, p_yes=..., reward=...)`` where the ORM judges it
    (:func:`needs_orm`), else as it was."""
    return orm.judge([traj], [task], use)[0]
