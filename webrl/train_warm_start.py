"""The supervised warm start of ``webrl train`` (``train.warm_start=sft``): the WebRL paper trains its RL
phases from an SFT policy, and a small model has to start there (DESIGN.md §6: SmolLM2-135M zero-shot solves
nothing). Demonstrations of the seed tasks (``train.warm_start_demos``, else recorded from the train split:
each sandbox task's oracle, MiniWoB++'s scripted policies) -> ``webrl sft`` -> ``<run>/warm-start/policy``, the
policy the run starts from. Test tasks never contribute: the demos come from the train split only.

It trains where the phases do, on a learner group (``train.learner_ranks`` ranks on
``ray.placement.learner_rank``: an 8B model's GPUs, not the head node) whose ranks end with it, so their memory
goes back before the phases' group starts. A resumed run finds the finished warm start by its checkpoint
manifest and does not redo it."""

from __future__ import annotations

import time
from pathlib import Path

from webrl.config import WebRLConfig

FOLDER, DEMOS = "warm-start", "warm-start-demos"


def warm_start(cfg: WebRLConfig, run_folder: Path) -> dict | None:
    """Run the warm start unless it is off or done; its summary (with ``policy``, the folder to start from)."""
    from learner.checkpoint import MANIFEST
    from learner.group import LearnerGroup
    from webrl.finetune import run_sft

    tc = cfg.train
    if tc.warm_start == "none":
        return None
    out = run_folder / FOLDER
    if (out / MANIFEST).exists():
        return {"policy": str(out / "policy"), "resumed": True}
    t0 = time.perf_counter()
    demos = tc.warm_start_demos or record_demos(cfg, run_folder / DEMOS)  # beside: a checkpoint replaces its folder
    recorded = time.perf_counter() - t0
    summary = run_sft(cfg, [demos], model=cfg.rollout.model, out=str(out), learners=LearnerGroup.for_run)
    return summary | {"policy": str(out / "policy"), "demos": str(demos), "record_s": recorded,
                      "total_s": time.perf_counter() - t0}


def record_demos(cfg: WebRLConfig, folder: Path) -> str:
    """Demonstrations of the train split's seed tasks, written to ``folder/demos.jsonl``."""
    from envpool.demo import demo_jobs, run_jobs
    from envpool.sandbox.oracle import save_demos

    from envpool.demo import DemoRefused
    from envpool.suites.miniwob_scripts import POLICIES
    from envpool.suites.miniwob_split import task_name
    from webrl.config import ConfigError

    tc = cfg.train
    names = tc.tasks or None
    if names and tc.suite == "miniwob":  # the seed tasks that have a scripted demonstrator
        names = [n for n in names if task_name(n) in POLICIES] or None
        if names is None:
            raise ConfigError("train.warm_start=sft: no seed task has a scripted demonstrator (envpool/suites/"
                              "miniwob_scripts); add some to train.tasks or give train.warm_start_demos")
    demo_cfg = cfg.model_copy(deep=True)  # demo_jobs widens env.max_steps to the longest oracle
    try:
        jobs, _ = demo_jobs(demo_cfg, tc.suite, names, tc.warm_start_seeds, tc.train_split, save=True,
                            allow_heldout=False)
    except DemoRefused as e:
        raise ConfigError(f"train.warm_start=sft: {e}") from None
    records, _, _ = run_jobs(demo_cfg, jobs, pools=1)
    save_demos(records, str(folder))
    return str(folder)
