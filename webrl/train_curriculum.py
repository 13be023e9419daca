"""The curriculum step of a phase (DESIGN.md §4): this phase's failed tasks -> the generator -> the filters
-> the task store, for the next phase. V(s0) of a new task is the critic on its start state: the WebRL
prompt of its instruction over its start page, the page as this phase's episodes first saw it on that
start URL (generated tasks start where their parents did)."""

from __future__ import annotations

from actors.prompt import build_prompt
from curriculum.evolve import evolve
from curriculum.filters import feasibility_from_config
from learner.batches import StepSample, pad_batch
from webrl.config import WebRLConfig
from webrl.types import Observation, Task, Trajectory


def start_pages(trajs: list[Trajectory], store) -> dict[str, Observation]:
    """Start URL (as the task store holds it) -> the first page an episode of a task with that URL saw."""
    pages: dict[str, Observation] = {}
    for t in trajs:
        if t.steps and t.task_id in store:
            pages.setdefault(store.get(t.task_id).start_url, t.steps[0].observation)
    return pages


def value_fn(group, tokenizer, pages: dict[str, Observation], budget: int, pad_id: int):
    """V(s0) per critic head of each task (the curriculum's value filter)."""

    def values(tasks: list[Task]) -> list[list[float]]:
        samples = []
        for task in tasks:
            page = pages.get(task.start_url) or Observation(url=task.start_url, html="")
            prompt = build_prompt(tokenizer, task.instruction or "", [], page, budget)
            samples.append(StepSample("", task.id, 0, 1, tuple(prompt.token_ids), (), 0.0))
        return group.head_values(pad_batch(samples, pad_id, actions=False)).tolist() if samples else []

    return values


def _site_rules(cfg: WebRLConfig):
    if cfg.train.suite != "sandbox":
        return None, None
    from curriculum.sandbox_catalog import SandboxCatalog, sandbox_rules

    catalog = SandboxCatalog.from_config(cfg.env.sandbox)
    return sandbox_rules(catalog), {site: catalog.examples(site) for site in ("shop", "admin", "forum")}


def evolve_next(store, generator, cfg: WebRLConfig, phase: int, trajs: list[Trajectory], group, tokenizer) -> dict:
    """Generate, filter and keep the tasks of ``phase + 1``; the counts for the phase summary."""
    rules, entities = _site_rules(cfg)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    fn = value_fn(group, tokenizer, start_pages(trajs, store), cfg.learner.context_tokens, pad_id)
    summary = evolve(store, generator, feasibility_from_config(cfg.curriculum, rules), cfg.curriculum, phase + 1,
                     value_fn=fn, entities=entities)
    kept = store.summary(phase + 1)
    return summary | {"generated": summary.get("parsed", 0), "kept": kept["kept"], "rejected": kept["rejected"],
                      "rejected_by_filter": kept["rejected_by_filter"]}
