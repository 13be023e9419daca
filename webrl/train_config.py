"""``train``: what ``webrl train`` runs each phase (DESIGN.md §2, §4): which seed tasks, how many episodes,
the held-out test tasks, the learner's ranks, and the ablation switches that are not another section's key.

The WebRL constants live in their own sections (``learner``, ``replay``, ``curriculum``, ``orm``); this one
only says how the phase driver (``webrl/train.py``) uses them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Seeds of a MiniWoB++ task's instances (a sandbox or WebArena task is one fixed instance and ignores its seed),
# disjoint by use: the warm start's demonstrations draw 0..warm_start_seeds-1; phase k's rollouts
# seed + TRAIN_SEEDS + k·episodes_per_task onwards (every phase meets new instances); the unseen-instance
# evaluation seed + INSTANCE_SEEDS onwards (no demonstration or rollout ever drew them).
TRAIN_SEEDS = 1_000
INSTANCE_SEEDS = 1_000_000


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    suite: str = Field("sandbox", description="Suite of the seed and test tasks (sandbox, miniwob, webarena).")
    train_split: str | None = Field(
        "train", description="Split of the suite the seed tasks come from; None: every task of the suite.")
    test_split: str | None = Field(
        "test", description="Split of the held-out test tasks evaluated after each phase; None: no evaluation.")
    tasks: list[str] = Field(
        default_factory=list, description="Seed task names (e.g. shop-cart-add-0) within train_split; empty: all of it.")
    test_tasks: list[str] = Field(
        default_factory=list, description="Test task names within test_split; empty: all of it.")
    episodes_per_task: int = Field(
        4, gt=0, description="Training episodes (temperature rollout.temperature) per task and phase; MiniWoB++ seeds new "
        "to each phase (seed + 1000 + phase·N onwards).")
    eval_episodes_per_task: int = Field(
        1, ge=0, description="Held-out episodes (rollout.eval_temperature, greedy) per test task after each phase; 0: none.")
    test_instances_per_task: int = Field(
        0, ge=0, description="Also evaluate (greedy) after each phase on this many unseen instances of every seed task: "
        "MiniWoB++ seeds that no demonstration or rollout drew (seed + 1,000,000 onwards), the suite's usual test "
        "protocol, beside the held-out test tasks (a transfer test); 0: none. MiniWoB++ only: a sandbox or WebArena "
        "task is one fixed instance, so its held-out instances are its test split.")
    eval_initial: bool = Field(
        True, description="Also evaluate the starting policy before phase 0 (the baseline the plot starts from).")
    generated_tasks_per_phase: int = Field(
        0, ge=0, description="Generated tasks rolled out in a phase, at most (those kept for it, oldest first); "
        "0: all of them (curriculum.cap_per_phase bounds them).")
    kl_constraint: bool = Field(
        True, description="true (WebRL): π_ref is the policy the previous phase ended with. false (ablation 'no KL'): "
        "π_ref follows π before every actor step, so the log-ratio starts at 0 and each step is a plain advantage-"
        "weighted policy-gradient step, with no constraint accumulating over the phase.")
    orm_agreement: bool = Field(
        True, description="Also score the rule- or page-judged training trajectories with the ORM, for the summary's "
        "ORM agreement with rule labels (costs one ORM forward pass per trajectory).")
    warm_start: Literal["none", "sft"] = Field(
        "none", description="The starting policy: none: rollout.model as it is; sft (the paper starts WebRL from an SFT "
        "policy): first `webrl sft` on demonstrations of the seed tasks (train.warm_start_demos, else recorded from "
        "the train split: sandbox oracles, MiniWoB++ scripted policies), learner.sft_epochs passes; the run then "
        "starts from that policy, and its initial evaluation measures it.")
    warm_start_demos: str | None = Field(
        None, description="Folder of demonstrations (demos.jsonl, as `webrl env demo --save` writes) for the sft warm "
        "start; None: record them into <run>/warm-start-demos.")
    warm_start_seeds: int = Field(
        3, gt=0, description="Scripted episodes per MiniWoB++ task recorded for the warm start (an oracle runs once).")
    learner_ranks: int = Field(1, gt=0, description="Learner ranks (Ray actors joined by torch.distributed).")
    learner_cpus_per_rank: float = Field(1.0, ge=0, description="CPUs Ray reserves for one learner rank.")
    learner_threads: int = Field(
        0, ge=0, description="CPU threads of one learner rank (OMP_NUM_THREADS); 0: the cores of the machine that "
        "starts the run shared among the ranks (Ray would give a 1-CPU actor one thread: half the speed on 2 cores).")
    learner_gpus_per_rank: float = Field(0.0, ge=0, description="GPUs Ray reserves for one learner rank.")
    run_name: str | None = Field(
        None, description="Folder name of the run under run_dir; None: train-<date>-<time>. --resume takes the folder.")
    rollout_timeout_s: float | None = Field(
        None, gt=0, description="Limit on one phase's rollouts (and on one evaluation) in seconds; None: none.")
