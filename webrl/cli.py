"""The ``webrl`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

from rich.console import Console

from envpool.sandbox.seed_data import SeedDataError
from envpool.sandbox.task_specs import TaskFileError
from reward.rule_config import RuleConfigError
from webrl.config import ConfigError, WebRLConfig, load_config

console = Console()

EPILOG = """examples:
  webrl env list                                   every task of every suite
  webrl sites serve --port-base 8000               browse the bundled sandbox sites (shop, admin, forum)
  webrl env show miniwob/click-button --seed 3     the page exactly as the agent sees it
  webrl env show file:///path/to/page.html         any page, to debug an observation
  webrl env play miniwob/login-user --seed 3 --action 'do(action="Type", argument="kate", element="0")'
  webrl env demo                                   scripted MiniWoB++ episodes on a Ray browser pool
  webrl eval --suite miniwob --tasks click-button,login-user --episodes 20 --report out.json
  webrl eval --suite miniwob --model ./checkpoints/phase-3/policy --set rollout.workers=2
  webrl show-trajectory eval-20261121-101500-ab12-0003   one episode: instruction, pages, actions, outcome
  webrl env demo --save demos/ && webrl sft --data demos/ --epochs 3   supervised warm start
  webrl env play sandbox/shop-cart-add-0 --oracle  replay a seed task's oracle: each page, then the reward
  webrl env demo --suite sandbox --split train --save demos/   oracle replays as demonstrations
  webrl train --config tiny --set learner.phases=2     the WebRL phase loop; --resume runs/train-... continues one
  webrl orm train --data runs/ --out checkpoints/orm && webrl orm eval --data runs/new/ --model checkpoints/orm
  webrl status ; webrl scale rollout 4 ; webrl scale browsers 8   watch and resize a running webrl train
"""


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PRESET|PATH", help="a preset in configs/ (local, tiny, ...) or a YAML file; default: local")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set env.browser.contexts=8 (repeatable)")


def _print_observation(obs, instruction: str | None = None) -> None:
    if instruction is not None:
        console.print(f"[bold]instruction:[/] {instruction}", highlight=False)
    flags = " [yellow](truncated)[/]" if obs.truncated else ""
    console.print(f"[bold]url:[/] {obs.url}   [bold]elements:[/] {obs.element_count}{flags}", highlight=False)
    if obs.error:
        console.print(f"[bold red]error:[/] {obs.error}", highlight=False)
    for note in obs.notes:
        console.print(f"[bold yellow]note:[/] {note}", highlight=False)
    console.print(obs.html, markup=False, highlight=False, soft_wrap=True)


# ---- env list / show / play -------------------------------------------------------------------
def cmd_env_list(cfg: WebRLConfig, args) -> int:
    from envpool.suites import Suites

    suites = Suites(cfg.env)
    tasks = [t for t in suites.all_tasks() if not args.suite or t.suite == args.suite]
    if args.json:
        print(json.dumps([t.id for t in tasks]))
        return 0
    for t in tasks:
        print(t.id)
    counts = Counter(t.suite for t in tasks)
    console.print(", ".join(f"{n} tasks in {s}" for s, n in counts.items()), style="dim", highlight=False)
    return 0


async def _play(cfg: WebRLConfig, target: str, seed: int | None, actions: list[str], scripted: bool,
                oracle: bool = False) -> int:
    from envpool.pool import BrowserPool
    from envpool.suites.miniwob_scripts import scripted_action

    async with BrowserPool(cfg.env) as pool:
        rec = await pool.reset(target, seed=seed)
        if rec.first_observation is not None:
            _print_observation(rec.first_observation, rec.instruction)
        if rec.status.value != "running":
            console.print(f"[bold red]episode ended at reset ({rec.status.value}):[/] {rec.reason}", highlight=False)
            return 1
        obs, step_no, played = rec.first_observation, 0, []
        pending = list(actions)
        while pending or scripted:
            text = pending.pop(0) if pending else scripted_action(rec.task_id, rec.instruction, obs.html, played)
            played.append(text)
            step_no += 1
            step = await pool.step(rec.episode_id, text)
            console.rule(f"step {step_no}: {text}", style="cyan")
            _print_observation(step.observation)
            console.print(f"[bold]reward:[/] {step.reward}   [bold]status:[/] {step.status.value}", highlight=False)
            obs = step.observation
            if step.done:
                break
        final = await pool.close(rec.episode_id)
        console.rule()
        console.print(f"[bold]episode:[/] {final.status.value} after {len(final.steps)} steps, reward {final.reward}"
                      + (f" ({final.reason})" if final.reason else ""), highlight=False)
        if oracle:  # the oracle's proof: every rule check, and a failing exit status if one failed
            for line in final.reward_checks:
                console.print(line, markup=False, highlight=False)
            return 0 if final.reward == 1.0 else 1
        return 0


def cmd_env_show(cfg: WebRLConfig, args) -> int:
    return asyncio.run(_play(cfg, args.target, args.seed, [], scripted=False))


def cmd_env_play(cfg: WebRLConfig, args) -> int:
    if args.oracle:
        from envpool.sandbox.oracle import oracle_of
        from envpool.suites import Suites

        actions = oracle_of(Suites(cfg.env), args.target)  # KeyError (no such task, no oracle): printed by main
        cfg.env.max_steps = max(cfg.env.max_steps, len(actions))
        return asyncio.run(_play(cfg, args.target, args.seed, actions, scripted=False, oracle=True))
    if not args.action and not args.scripted:
        console.print("give at least one --action, --scripted to let the scripted policy play, or --oracle to replay "
                      "the task's oracle", style="red")
        return 2
    return asyncio.run(_play(cfg, args.target, args.seed, args.action, args.scripted))


def cmd_env_demo(cfg: WebRLConfig, args) -> int:
    from envpool.demo import run_demo

    return run_demo(cfg, tasks=args.tasks.split(",") if args.tasks else None, seeds=args.seeds,
                    pools=args.pools, report=args.report, save=args.save, suite=args.suite, split=args.split,
                    allow_heldout=args.allow_heldout, policy=args.policy)


# ---- sites ------------------------------------------------------------------------------------
def cmd_sites_serve(cfg: WebRLConfig, args) -> int:
    from envpool.sandbox.serve import serve

    return serve(cfg.env, port_base=args.port_base)


# ---- eval / show-trajectory --------------------------------------------------------------------
def cmd_eval(cfg: WebRLConfig, args) -> int:
    from envpool.suites import Suites
    from webrl.evaluate import run_eval

    if args.workers is not None:
        cfg.rollout.workers = args.workers
    if args.engine:
        cfg.rollout.engine = args.engine
    suites = Suites(cfg.env)
    tasks = suites.select(args.suite, args.tasks.split(",") if args.tasks else None, args.split)
    if args.model:
        from actors.model_store import resolve_model

        resolve_model(args.model)  # a bad path fails here, before Ray starts
    run_eval(cfg, tasks, args.episodes, model=args.model, out_dir=args.out, report=args.report)
    return 0


def cmd_sft(cfg: WebRLConfig, args) -> int:
    from webrl.finetune import run_sft

    run_sft(cfg, args.data, model=args.model, out=args.out, epochs=args.epochs, include_failures=args.include_failures,
            resume=args.resume, save_every=args.save_every)
    return 0


def cmd_train(cfg: WebRLConfig, args) -> int:
    from webrl.train import resume_config, run_train

    if args.resume:
        if args.config:
            console.print("--resume continues with the run's own config (<run>/config.json): leave --config out "
                          "(--set still applies on top, e.g. --set learner.phases=10)", style="red")
            return 2
        cfg = resume_config(args.resume, args.overrides)
    run_train(cfg, resume=bool(args.resume))
    return 0


def _control(cfg: WebRLConfig, args):
    """The running job's control actor; prints why there is none and returns None."""
    from webrl.control import NoRunError, connect

    try:
        return connect(args.address or cfg.ray.address, cfg.ray.namespace)
    except NoRunError as e:
        console.print(f"[bold red]{e}[/]", highlight=False)
        return None


def cmd_status(cfg: WebRLConfig, args) -> int:
    import ray

    from webrl.control import status_table

    handle = _control(cfg, args)
    if handle is None:
        return 1
    st = ray.get(handle.status.remote(), timeout=30)
    if args.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        console.print(status_table(st))
    return 0


def cmd_scale(cfg: WebRLConfig, args) -> int:
    import ray

    from webrl.control import SCALABLE

    handle = _control(cfg, args)
    if handle is None:
        return 1
    try:
        ray.get(handle.scale.remote(args.what, args.n), timeout=30)
    except ray.exceptions.RayTaskError as e:  # the control actor refused the count: its reason
        console.print(f"[bold red]error:[/] {str(e).strip().splitlines()[-1]}", highlight=False)
        return 2
    console.print(f"asked the run for {args.n} {SCALABLE[args.what]}; the driver applies it between dispatches "
                  "(see webrl status)", highlight=False)
    return 0


def cmd_show_trajectory(cfg: WebRLConfig, args) -> int:
    from webrl.trajectory_view import find_trajectory, print_trajectory

    traj = find_trajectory(args.dir or cfg.run_dir, args.id)
    print_trajectory(traj, console, full_pages=args.full)
    return 0


# ---- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webrl", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train open LLMs into web agents with WebRL on Ray. Each command takes --config and --set.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    env = sub.add_parser("env", help="browse the environments: list tasks, show a page, play actions",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    env_sub = env.add_subparsers(dest="env_command", metavar="ENV_COMMAND", required=True)

    p = env_sub.add_parser("list", help="every task of every suite")
    p.add_argument("--suite", help="only this suite (e.g. miniwob)")
    p.add_argument("--json", action="store_true", help="print a JSON list of task ids")
    _config_args(p)
    p.set_defaults(func=cmd_env_list)

    for name, func, help_text in (
        ("show", cmd_env_show, "the page of a task (or any URL / file:// path) exactly as the agent sees it"),
        ("play", cmd_env_play, "run actions in a task and print each observation, the reward and the status"),
    ):
        p = env_sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("target", help="a task id (miniwob/click-button), an http(s):// URL or a file:// path")
        p.add_argument("--seed", type=int, default=None, help="episode seed (same seed, same page)")
        if name == "play":
            p.add_argument("--action", action="append", default=[], metavar="TEXT",
                           help='one action in the WebRL grammar, e.g. \'do(action="Click", element="3")\' (repeatable)')
            p.add_argument("--scripted", action="store_true",
                           help="after the given actions, let the task's scripted policy play (MiniWoB tasks that have one)")
            p.add_argument("--oracle", action="store_true",
                           help="replay the task's stored oracle (every sandbox task has one), then print the reward's "
                           "checks; exits 1 unless the reward is 1")
        _config_args(p)
        p.set_defaults(func=func)

    p = env_sub.add_parser("demo", help="scripted MiniWoB++ episodes, or the sandbox tasks' oracles, on Ray browser-pool "
                           "actors, with a summary table")
    p.add_argument("--suite", default="miniwob", help="miniwob (scripted policies) or sandbox (each task's oracle, replayed "
                   "verbatim; --save makes them demonstrations for webrl sft); default: miniwob")
    p.add_argument("--tasks", help="comma-separated task names (default: every task with a scripted policy or an oracle)")
    p.add_argument("--split", help="only this split: miniwob train or heldout (its scripted tasks); sandbox train or "
                   "test. --save leaves held-out (miniwob) and test (sandbox) tasks out unless --allow-heldout")
    p.add_argument("--seeds", type=int, default=3, help="episodes per MiniWoB task (seeds 0..N-1); an oracle runs once")
    p.add_argument("--pools", type=int, default=1, help="BrowserPool actors to spread episodes over")
    p.add_argument("--report", metavar="PATH", help="write the results as JSON")
    p.add_argument("--save", metavar="DIR", help="write every episode record to DIR/demos.jsonl (demonstrations for webrl sft)")
    p.add_argument("--policy", choices=("scripted", "random"), default="scripted",
                   help="scripted: MiniWoB++'s scripted policies, the sandbox tasks' oracles; random: the random-action "
                   "floor on any suite's tasks (a random element of the page, clicked, typed a word of the "
                   "instruction, or given one of its options), --seeds episodes per task")
    p.add_argument("--allow-heldout", action="store_true", help="with --save: also save held-out MiniWoB++ tasks or sandbox "
                   "test tasks, for evaluation only (they are never used for demonstrations, SFT or RL)")
    _config_args(p)
    p.set_defaults(func=cmd_env_demo)

    sites = sub.add_parser("sites", help="the bundled sandbox sites (shop, admin, forum)")
    sites_sub = sites.add_subparsers(dest="sites_command", metavar="SITES_COMMAND", required=True)
    p = sites_sub.add_parser("serve", help="serve the sandbox sites on 127.0.0.1 and print their URLs, until Ctrl-C",
                             description="Serve the shop, its admin and the forum (one port each) for browsing by hand; "
                             "requests without an episode share one state, kept until the server stops.")
    p.add_argument("--port-base", type=int, default=None, metavar="N",
                   help="listen on N (shop), N+1 (admin), N+2 (forum), N+3 (control API); default: env.sandbox.port_base "
                   "(0: free ports)")
    _config_args(p)
    p.set_defaults(func=cmd_sites_serve)

    p = sub.add_parser("eval", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       help="measure a model on a suite: success per task, a JSON report, saved trajectories",
                       description="Run a model (greedy, rollout.eval_temperature) on the tasks of a suite with Ray "
                       "rollout workers and browser pools; prints a progress bar and a per-task success table, "
                       "saves every trajectory under run_dir for `webrl show-trajectory`.")
    p.add_argument("--suite", default="miniwob", help="the suite to measure on (default: miniwob)")
    p.add_argument("--tasks", help="comma-separated task names of the suite (default: all, or all of --split)")
    p.add_argument("--split", help="a named split of the suite (e.g. test), for suites that have splits")
    p.add_argument("--episodes", type=int, default=5, help="episodes per task, seeds seed..seed+N-1 (default: 5)")
    p.add_argument("--model", help="a Hugging Face model directory (e.g. a checkpoint's policy/); default: rollout.model")
    p.add_argument("--engine", choices=["vllm", "transformers"], help="inference engine (default: rollout.engine, vllm)")
    p.add_argument("--workers", type=int, help="rollout workers (default: rollout.workers)")
    p.add_argument("--report", metavar="PATH", help="write the results as JSON (overall success_rate, per task)")
    p.add_argument("--out", metavar="DIR", help="where trajectories go (default: <run_dir>/eval-<time>)")
    _config_args(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sft", help="supervised warm start on demonstrations; writes a checkpoint engines serve",
                       description="Fine-tune the policy on demonstrations (JSONL of trajectories, or of episode "
                       "records from `webrl env demo --save DIR`): each step's prompt is rendered for this model, "
                       "the target is the action text. WebRL starts from such a policy.")
    p.add_argument("--data", nargs="+", required=True, metavar="PATH", help="JSONL files, or folders of them")
    p.add_argument("--model", help="the model to start from (default: rollout.model; with LoRA also when resuming: "
                   "the base the adapters train on)")
    p.add_argument("--out", metavar="DIR", help="checkpoint folder (default: the --resume folder, else checkpoints/sft)")
    p.add_argument("--epochs", type=int, help="passes over the data in the whole run, resumed ones included "
                   "(default: learner.sft_epochs)")
    p.add_argument("--include-failures", action="store_true", help="train on failed episodes too")
    p.add_argument("--resume", metavar="CHECKPOINT_DIR", help="continue the run that wrote this checkpoint: policy (or "
                   "LoRA adapters), optimizer state, RNG and step counter; the same --data is required")
    p.add_argument("--save-every", type=int, metavar="N", help="also write the checkpoint every N steps")
    _config_args(p)
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("train", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       help="the WebRL phase loop: roll out, judge, replay, train critic and actor, evolve tasks, evaluate",
                       description="Run learner.phases WebRL phases. Each phase rolls out the seed tasks (train.suite, "
                       "train.train_split) and the tasks the curriculum generated for it, judges the episodes (rule "
                       "rewards; the ORM for tasks without a rule), trains the critic then the actor on them and on the "
                       "replayed past successes, publishes the weights to the rollout workers, generates the next "
                       "phase's tasks from the failures, evaluates on the held-out test tasks (train.test_split) and "
                       "checkpoints to <run_dir>/<run>/checkpoints/phase-<k>/. Each phase prints a summary; the run "
                       "writes report.json and success_per_phase.png. Ablations: replay.max_ratio=0 (no replay), "
                       "train.kl_constraint=false (no KL), curriculum.enabled=false (fixed tasks), "
                       "learner.actor_loss=paper|reference.")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run after its last complete phase: policy, critic, "
                   "optimizer and step from that phase's checkpoint, the run's task store and replay buffer, the run's "
                   "own config (--set applies on top)")
    _config_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("status", help="the running webrl train job: phase, policy version, throughput, success, "
                       "staleness, workers and browser pools",
                       description="Connect to the Ray cluster and print the status the running `webrl train` posts "
                       "(every second or so). Exit status 1 when no run is going in the namespace (ray.namespace).")
    p.add_argument("--address", help="the Ray cluster (default: ray.address, else auto: the cluster of this node)")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    _config_args(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("scale", help="change the running job's rollout workers or browser pools, without restarting "
                       "the learner", description="Ask the running `webrl train` for N rollout workers (new ones load "
                       "the latest published weights before their first episode; retired ones finish their episodes) "
                       "or N BrowserPool actors. The driver applies it between dispatches, within about a second while "
                       "episodes run, else at the next rollout.")
    p.add_argument("what", choices=["rollout", "browsers"], help="rollout: rollout workers; browsers: BrowserPool actors")
    p.add_argument("n", type=int, help="how many (>= 1)")
    p.add_argument("--address", help="the Ray cluster (default: ray.address, else auto: the cluster of this node)")
    _config_args(p)
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("show-trajectory", help="one saved episode, readable: instruction, each page, each action, outcome")
    p.add_argument("id", help="a trajectory id, or a unique prefix of one (eval prints them)")
    p.add_argument("--dir", help="where to look (default: run_dir, every run under it)")
    p.add_argument("--full", action="store_true", help="print whole pages (default: the first 40 lines of each)")
    _config_args(p)
    p.set_defaults(func=cmd_show_trajectory)

    from webrl.orm_cli import add_orm_parser

    add_orm_parser(sub, _config_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as e:
        console.print(f"[bold red]config error:[/] {e}", highlight=False)
        return 2
    t0 = time.time()
    try:
        return args.func(cfg, args)
    except (KeyError, FileNotFoundError) as e:  # unknown task ids, missing files: the message says what to do
        console.print(f"[bold red]error:[/] {e.args[0] if isinstance(e, KeyError) and e.args else e}", highlight=False)
        return 2
    except ConfigError as e:  # a suite's own settings (site URLs, logins) checked when it is used
        console.print(f"[bold red]config error:[/] {e}", highlight=False)
        return 2
    except (TaskFileError, SeedDataError, RuleConfigError) as e:  # a broken data file: the message names file and line
        console.print(f"[bold red]data error:[/] {e}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print(f"interrupted after {time.time() - t0:.0f} s", style="yellow")
        return 130


if __name__ == "__main__":
    sys.exit(main())
