"""``webrl train``: the WebRL phase loop end to end (DESIGN.md §2-§5). Each phase:

1. **roll out** the phase's tasks (the seeds, and the generated tasks kept for this phase) in train mode on
   the rollout fleet; every trajectory streams into the run's replay buffer as it ends;
2. **score**: the ORM judges what no rule judged (``webrl/train_scoring.py``); outcomes go to the task store;
3. **replay**: the past phases' successes (one trajectory per task), each step scored under π_ref and kept
   when ``replay.confidence_low < p <= replay.confidence_high``, at most ``replay.max_ratio`` × the phase's steps;
4. **train** the critic, then the actor (``learner.epochs_per_phase`` passes of ``learner.batch_size``);
   π_ref ← π; **publish** the weights to the fleet (a new policy version);
5. **evolve** the next phase's tasks from this phase's failures (``curriculum``; critic V(s0) window);
6. **evaluate** on the held-out test tasks (eval mode, greedy);
7. **checkpoint** ``<run>/checkpoints/phase-<k>/`` (policy, reference, critic, optimizer, manifest) and write
   ``state.json``, ``report.json`` and ``success_per_phase.png``.

The replay buffer (``<run>/trajectories.jsonl``), the task store (``<run>/tasks.jsonl``) and the judged
outcomes (``<run>/outcomes.jsonl``) persist as they grow; ``--resume <run>`` restarts after the last
complete phase from its checkpoint, and a phase's episodes already stored are not run again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from rich.console import Console

from webrl import metrics
from webrl.config import ConfigError, WebRLConfig, _set_dotted, parse_override
from webrl.train_config import INSTANCE_SEEDS, TRAIN_SEEDS
from webrl.train_report import PLOT, REPORT, phase_table, plot_success, success_by_site, write_json
from webrl.types import EpisodeSpec, Task, Trajectory

console = Console()
log = logging.getLogger(__name__)

STATE = "state.json"
CONFIG = "config.json"


def resume_config(run_dir: str | Path, overrides: list[str]) -> WebRLConfig:
    """The config a run was started with (``<run>/config.json``), with ``--set`` overrides on top."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a webrl train run (no {CONFIG}); --resume takes the run folder "
                                "that `webrl train` printed, e.g. runs/train-20260101-120000")
    tree = json.loads(path.read_text())
    for item in overrides:
        _set_dotted(tree, *parse_override(item))
    cfg = WebRLConfig.model_validate(tree)
    cfg.train.run_name = Path(run_dir).name
    cfg.run_dir = str(Path(run_dir).parent)
    return cfg


def train_specs(run: str, phase: int, tasks: list[Task], episodes: int, seed: int) -> list[EpisodeSpec]:
    """``episodes`` seeds of every task (interleaved), new to each phase (``TRAIN_SEEDS``: a MiniWoB++ task
    draws new instances); ids ``<run>-p<phase>-<n>`` fixed before anything runs; a generated task travels
    whole (no suite lists it)."""
    first = seed + TRAIN_SEEDS + phase * episodes
    jobs = [(t, first + e) for e in range(episodes) for t in tasks]
    return [EpisodeSpec(id=f"{run}-p{phase}-{n:04d}", task_id=t.id, seed=s, phase=phase, mode="train",
                        task=t if t.origin.kind == "generated" else None) for n, (t, s) in enumerate(jobs)]


class Trainer:
    def __init__(self, cfg: WebRLConfig, *, resume: bool = False):
        self.cfg, self.tc = cfg, cfg.train
        self.run = self.tc.run_name or time.strftime("train-%Y%m%d-%H%M%S")
        self.folder = Path(cfg.run_dir) / self.run
        self.state = json.loads((self.folder / STATE).read_text()) if resume and (self.folder / STATE).exists() else {}
        if not resume and self.folder.exists() and any(self.folder.iterdir()):
            raise ConfigError(f"{self.folder} holds a run already: continue it with --resume {self.folder}, "
                                  "or set train.run_name to a new name")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.report = self.state.get("report") or {"run": self.run, "initial": None, "phases": []}
        self._orm = self._generator = None

    # ---- set-up -------------------------------------------------------------------------------
    def setup(self) -> None:
        import ray
        from transformers import AutoTokenizer

        from actors.fleet import RolloutFleet
        from actors.model_store import resolve_model
        from actors.replay_buffer import remote_buffer
        from curriculum.task_store import TaskStore
        from envpool.suites import Suites
        from webrl.cluster import init_ray
        from webrl.control import ControlLink, start_control
        from webrl.train_scoring import OutcomeLedger
        from webrl.train_warm_start import warm_start

        cfg, tc = self.cfg, self.tc
        (self.folder / CONFIG).write_text(cfg.model_dump_json(indent=2))
        suites = Suites(cfg.env)
        try:
            seeds = suites.select(tc.suite, tc.tasks or None, tc.train_split)
            self.test_tasks = suites.select(tc.suite, tc.test_tasks or None, tc.test_split) if tc.test_split else []
        finally:
            suites.close()
        if tc.test_instances_per_task and tc.suite != "miniwob":
            raise ConfigError(f"train.test_instances_per_task={tc.test_instances_per_task} needs MiniWoB++ (whose seeds "
                              f"draw new instances); a {tc.suite} task is one fixed instance, so its held-out instances "
                              "are train.test_split: set train.test_instances_per_task=0")
        if not seeds:
            raise ConfigError(f"no seed tasks: suite {tc.suite!r} split {tc.train_split!r} is empty (set train.suite, "
                             "train.train_split, or env.sandbox.tasks_dir to a folder of task files)")
        init_ray(cfg.ray)
        warm = warm_start(cfg, self.folder)
        if warm:  # the run starts from the warm-start policy (its initial evaluation measures it)
            cfg.rollout.model = warm["policy"]
            if not warm.get("resumed"):
                self.report["warm_start"] = warm
        self.store = TaskStore(self.folder, cfg.curriculum.cap_per_phase)
        self.store.add_seeds(seeds)
        self.ledger = OutcomeLedger(self.folder)
        self.buffer = remote_buffer(str(self.folder), resources=cfg.ray.placement.replay_buffer)
        done = self.state.get("phases_done", 0)
        base = resolve_model(cfg.rollout.model)
        self.checkpoint = str(self.folder / "checkpoints" / f"phase-{done - 1}") if done else None
        policy = str(Path(self.checkpoint) / "policy") if self.checkpoint else str(base)
        self.tokenizer = AutoTokenizer.from_pretrained(policy)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        lc = cfg.learner
        self.group = self.learner_group(self.checkpoint, base)
        self.control = ControlLink(start_control(self.run, cfg.ray.namespace))
        self.fleet = RolloutFleet(cfg, self.buffer, model_path=policy, control=self.control)
        self.policy_dir = policy
        self.version = 0
        if self.checkpoint:  # the workers hold the checkpoint's weights: give them its version too
            self.version, self.weights, _ = self.group.publish(self.fleet)
        self._ray = ray
        console.print(f"[bold]{self.run}[/]: {len(seeds)} seed tasks, {len(self.test_tasks)} test tasks of {tc.suite}; "
                      f"{lc.phases} phases, {tc.episodes_per_task} episodes per task; policy {policy}; "
                      f"run folder {self.folder}" + (f"; resuming after phase {done - 1}" if done else ""), highlight=False)

    def learner_group(self, checkpoint: str | None, base):
        """The learner group as a phase starts: built on ``checkpoint`` (a phase checkpoint, loaded whole:
        policy, reference, critic, optimizers, version) or, before the first one, on the starting policy."""
        from learner.scoring import ScoringGroup

        policy = str(Path(checkpoint) / "policy") if checkpoint else str(base)
        group = ScoringGroup.for_run(policy, self.cfg)
        if checkpoint:
            group.load(checkpoint)
        return group

    def close(self) -> None:
        for name in ("fleet", "group"):
            part = getattr(self, name, None)
            if part is not None:
                part.shutdown()
        if getattr(self, "control", None) is not None:  # the run is over: `webrl status` says so
            self._ray.kill(self.control.handle)
        for name in ("store", "ledger"):
            if getattr(self, name, None) is not None:
                getattr(self, name).close()
        if getattr(self, "buffer", None) is not None:
            self._ray.kill(self.buffer)
        if self._orm is not None:
            self._orm.close()
        if self._generator is not None and hasattr(self._generator.chat, "close"):
            self._generator.chat.close()

    # ---- the loop -----------------------------------------------------------------------------
    def train(self) -> dict:
        """Run the phases left; returns the report."""
        self.post_status(self.state.get("phases_done", 0), "starting")
        if self.tc.eval_initial and self.report["initial"] is None and self.test_tasks:
            self.report["initial"] = self.evaluate(-1)
            console.print(f"starting policy on the test tasks: {_fmt(self.report['initial'])}", highlight=False)
        if self.tc.eval_initial and self.report.get("initial_instances") is None and self.tc.test_instances_per_task:
            self.report["initial_instances"] = self.evaluate(-1, instances=True)
            console.print(f"starting policy on unseen instances of the train tasks: "
                          f"{_fmt(self.report['initial_instances'])}", highlight=False)
        for phase in range(self.state.get("phases_done", 0), self.cfg.learner.phases):
            p = self.phase(phase)
            console.print(phase_table(p))
        return self.report

    def phase(self, k: int) -> dict:
        times: dict[str, float] = {}
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            times[name] = now - t
            t = now
            self.post_status(k, f"{name} done")

        tasks = self.phase_tasks(k)
        self.post_status(k, "rollout")
        raw = self.rollout(k, tasks)
        lap("rollout")
        trajs = self.score(raw, tasks)
        lap("score")
        replay, learner = self.learn(k, trajs)
        lap("train")
        self.version, self.weights, _ = self.group.publish(self.fleet)
        lap("publish")
        curriculum = self.evolve(k, trajs)
        lap("evolve")
        test = self.evaluate(k) if self.test_tasks and self.tc.eval_episodes_per_task else None
        instances = self.evaluate(k, instances=True) if self.tc.test_instances_per_task else None
        lap("eval")
        from webrl.train_scoring import orm_agreement

        entry = {"phase": k, "version": self.version, "tasks": {"seeds": sum(t.origin.kind == "seed" for t in tasks),
                                                                  "generated": sum(t.origin.kind == "generated" for t in tasks)},
                 "train": success_by_site(trajs, self.site_of), "test": test, "test_instances": instances,
                 "orm": orm_agreement(raw, self.ledger), "curriculum": curriculum, "replay": replay, "learner": learner,
                 "times": times}
        self.save(k, entry)
        metrics.phase_finished(entry)
        self.post_status(k, "checkpoint done", last_train=entry["train"], last_test=entry["test"])
        times["checkpoint"] = time.perf_counter() - t
        times["total"] = sum(times.values())
        write_json(self.folder / REPORT, self.report)
        return entry

    def post_status(self, k: int, stage: str, **fields) -> None:
        """Tell ``webrl status`` where the run is (with the fleet's live view) and the metrics the phase and
        replay size; apply any ``webrl scale`` asked for meanwhile."""
        replay = self._ray.get(self.buffer.count.remote())
        metrics.run_progress(k, replay)
        self.control.update(self.fleet.status, phase=k, phases=self.cfg.learner.phases, stage=stage,
                            version=self.version, replay_size=replay, **fields)
        self.fleet.follow_control()

    # ---- steps of a phase ---------------------------------------------------------------------
    def site_of(self, task_id: str) -> str:
        from curriculum.task_store import site_of

        if task_id in self.store:
            return self.store.entry(task_id).site
        return next((site_of(t) for t in self.test_tasks if t.id == task_id), task_id.split("/", 1)[0])

    def phase_tasks(self, k: int) -> list[Task]:
        generated = self.store.tasks(phase=k, origin="generated")
        if self.tc.generated_tasks_per_phase:
            generated = generated[: self.tc.generated_tasks_per_phase]
        return self.store.tasks(origin="seed") + generated

    def _run(self, specs: list[EpisodeSpec], label: str) -> None:
        """Run the specs whose trajectories the buffer does not hold yet (a resumed phase runs the rest)."""
        have = set(self._ray.get(self.buffer.ids.remote()))
        todo = [s for s in specs if s.id not in have]
        if not todo:
            return
        t0, wins = time.perf_counter(), [0, 0]

        def on_result(s) -> None:
            wins[0] += s.success
            wins[1] += 1

        self.fleet.run(todo, on_result, timeout_s=self.tc.rollout_timeout_s)
        console.print(f"{label}: {wins[1]} episodes, {wins[0]} successes in {time.perf_counter() - t0:.0f} s",
                      highlight=False)

    def rollout(self, k: int, tasks: list[Task]) -> list[Trajectory]:
        self._run(train_specs(self.run, k, tasks, self.tc.episodes_per_task, self.cfg.seed), f"phase {k} rollouts")
        return self._ray.get(self.buffer.query.remote(phase=k, mode="train"))

    def score(self, raw: list[Trajectory], tasks: list[Task]) -> list[Trajectory]:
        from webrl.train_scoring import judge_phase

        trajs = judge_phase(raw, {t.id: t for t in tasks}, self.ledger, self.orm, self.cfg.orm.use, self.tc.orm_agreement)
        self.store.record_trajectories(trajs)
        return trajs

    def orm(self):
        """The ORM, started as a Ray actor (orm.gpus, ray.placement.orm) when a phase first needs it."""
        if self._orm is None:
            from actors.services import RemoteORM

            self._orm = RemoteORM(self.cfg)
        return self._orm

    def evaluate(self, k: int, instances: bool = False) -> dict:
        """Greedy episodes on the held-out test tasks or (``instances``) on unseen instances of the seed tasks."""
        from webrl.evaluate import eval_specs

        if instances:
            tasks, n, seed, tag = (self.store.tasks(origin="seed"), self.tc.test_instances_per_task,
                                   self.cfg.seed + INSTANCE_SEEDS, "inst")
        else:
            tasks, n, seed, tag = self.test_tasks, max(1, self.tc.eval_episodes_per_task), self.cfg.seed, "eval"
        specs = [s.model_copy(update={"phase": k}) for s in eval_specs(f"{self.run}-p{k}-{tag}", tasks, n, seed)]
        what = " on unseen instances of the train tasks" if instances else ""
        self._run(specs, ("evaluation" if k < 0 else f"phase {k} evaluation") + what)
        ids = {s.id for s in specs}
        trajs = [t for t in self._ray.get(self.buffer.query.remote(phase=k, mode="eval")) if t.id in ids]
        return success_by_site(trajs, self.site_of)

    def learn(self, k: int, trajs: list[Trajectory]) -> tuple[dict, dict]:
        """Train on the phase (``webrl/train_learn.py``). A learner rank that dies mid-phase loses the phase's
        updates so far: the group is rebuilt from the last phase checkpoint and the phase trained once more
        (its figures are the second run's; ``restarts`` says it happened)."""
        from ray.exceptions import RayActorError

        from webrl.train_learn import phase_update

        past = self.ledger.apply(t for t in self._ray.get(self.buffer.query.remote(mode="train")) if t.phase < k)
        try:
            return phase_update(self.group, self.cfg, trajs, past, pad_id=self.pad_id, phase=k)
        except RayActorError as e:  # a learner rank died: redo the phase's learning from the last phase checkpoint
            log.warning("phase %d: a learner rank died (%s); rebuilding the learner group from %s and training the "
                        "phase again", k, type(e).__name__, self.state.get("checkpoint") or "the starting policy")
            self.group.shutdown()
            from actors.model_store import resolve_model

            self.group = self.learner_group(self.state.get("checkpoint"), resolve_model(self.cfg.rollout.model))
            replay, learner = phase_update(self.group, self.cfg, trajs, past, pad_id=self.pad_id, phase=k)
            return replay, learner | {"restarts": 1}

    def evolve(self, k: int, trajs: list[Trajectory]) -> dict:
        from webrl.train_curriculum import evolve_next

        if not self.cfg.curriculum.enabled:
            return {"phase": k + 1, "enabled": False, "note": "off (curriculum.enabled=false)"}
        if k + 1 >= self.cfg.learner.phases:
            return {"phase": k + 1, "enabled": True, "note": "last phase: nothing to evolve"}
        cur = self.cfg.curriculum
        if self._generator is None:
            from actors.services import RemoteEngineChat
            from curriculum.generator import TaskGenerator, make_generator

            engine = cur.generator == "engine"  # its engine in an actor (curriculum.gpus, its placement)
            self._generator = TaskGenerator(RemoteEngineChat(self.cfg), cur) if engine else make_generator(self.cfg)
        chat = self._generator.chat
        if hasattr(chat, "load_weights") and cur.model is None:  # our engine writes as the current policy
            chat.load_weights(self.weights, self.version)
        from curriculum.generator import GeneratorError

        try:
            return evolve_next(self.store, self._generator, self.cfg, k, trajs, self.group, self.tokenizer)
        except GeneratorError as e:  # the next phase trains on the seeds alone; the summary says why
            log.warning("phase %d: no tasks generated: %s", k + 1, e)
            return {"phase": k + 1, "enabled": True, "note": f"generator failed: {e}"}

    def save(self, k: int, entry: dict) -> None:
        path = self.folder / "checkpoints" / f"phase-{k}"
        self.group.save(str(path), phase=k, step=self.version, tokenizer_dir=self.policy_dir)
        entry["checkpoint"] = str(path)
        self.report["phases"].append(entry)
        self.report["plot"] = str(plot_success(self.report, self.folder / PLOT) or "")
        self.state = {"run": self.run, "phases_done": k + 1, "checkpoint": str(path), "version": self.version,
                      "report": self.report}
        write_json(self.folder / STATE, self.state)


def _fmt(row: dict) -> str:
    ci = row.get("ci95")
    rate = f"{row['success_rate']:.0%}" if row.get("success_rate") is not None else "-"
    return f"{row['successes']}/{row['episodes']} ({rate}" + (f", 95% CI {ci[0]:.0%}-{ci[1]:.0%})" if ci else ")")


def run_train(cfg: WebRLConfig, *, resume: bool = False) -> dict:
    """Train ``learner.phases`` phases (the rest of them with ``resume``); returns the report."""
    trainer = Trainer(cfg, resume=resume)
    try:
        trainer.setup()
        report = trainer.train()
    finally:
        trainer.close()
    last = report["phases"][-1] if report["phases"] else None
    for key, start_key, what in (("test", "initial", "test success"),
                                 ("test_instances", "initial_instances", "success on unseen instances of the train tasks")):
        if last and last.get(key):
            start = report.get(start_key)
            console.print(f"{what} after phase {last['phase']}: {_fmt(last[key])}"
                          + (f"; at the start: {_fmt(start)}" if start else ""), highlight=False)
    console.print(f"report: {trainer.folder / REPORT}; plot: {trainer.folder / PLOT}; "
                  f"policy: {last['checkpoint'] + '/policy' if last else '-'}", highlight=False)
    return report
