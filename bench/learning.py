"""Benchmark: learning, as numbers. The ladder on held-out tasks, each rung measured in one run, small enough
to finish on a CPU in bounded time, so that a regression in learning shows up as a number:

- ``random``: the random-action floor (``envpool/random_policy.py``, the same episodes per task);
- ``base``: the model zero-shot, unconstrained decoding;
- ``grammar``: + constrained decoding of the action grammar (``rollout.constrained``);
- ``sft``: + the supervised warm start (``train.warm_start=sft``: ``webrl sft`` on demonstrations of the
  train split only), measured by ``webrl train``'s initial evaluation of the policy it starts from;
- ``phase k``: + WebRL phase k (``webrl train`` from the SFT policy; its held-out evaluation after the phase).

Where the config evaluates unseen instances of the train tasks (``train.test_instances_per_task``, MiniWoB++),
``instances`` holds the SFT and phase rungs on them, and its own ``last_minus_sft``.

With ``--ablation KEY=VALUE`` (e.g. ``replay.max_ratio=0``: no replay) a second ``webrl train`` starts from the
same SFT policy with that switch, and its phases are printed beside the default's (``ablation`` in the JSON).

Every rung reports episodes, successes, the success rate and its 95% Wilson interval; ``over_random`` is a
rung's rate over the random floor's measured in the same run (None while the floor is 0), and
``last_minus_sft`` what the WebRL phases added to the warm start. Each stage's wall seconds are in ``times_s``.

    python bench/learning.py --json                          # MiniWoB++: held-out tasks, SmolLM2-135M
    python bench/learning.py --json --suite sandbox          # the sandbox sites' test split
    python bench/learning.py --json --ablation replay.max_ratio=0
    python bench/learning.py --json --tiny --tasks click-button --episodes 1 --phases 1   # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from webrl.config import WebRLConfig, load_config  # noqa: E402

HELD_OUT = {"miniwob": "heldout", "sandbox": "test"}
# MiniWoB++: the README baseline's 12 train tasks (each has a scripted demonstrator), and the six held-out tasks
# that are their siblings (a variant of a trained task, never trained on: what transfer looks like); the
# sandbox: its whole train and test splits
DEFAULT_TRAIN = {"miniwob": "choose-list,click-button,click-checkboxes,click-dialog,click-link,click-option,click-tab,"
                            "click-test,enter-password,enter-text,focus-text,login-user", "sandbox": None}
DEFAULT_TEST = {"miniwob": "click-checkboxes-transfer,click-dialog-2,click-test-transfer,enter-text-dynamic,focus-text-2,"
                           "login-user-popup", "sandbox": None}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def rung(name: str, successes: int, episodes: int, wall_s: float | None = None) -> dict:
    from webrl.train_report import wilson

    return {"rung": name, "episodes": episodes, "successes": successes,
            "success_rate": successes / episodes if episodes else None, "ci95": wilson(successes, episodes),
            "wall_s": wall_s}


def random_floor(cfg: WebRLConfig, suite: str, tasks: list[str] | None, split: str, episodes: int) -> dict:
    from envpool.demo import demo_jobs, run_jobs

    t0 = time.perf_counter()
    jobs, _ = demo_jobs(cfg, suite, tasks, episodes, split, save=False, allow_heldout=True, policy="random")
    records, _, _ = run_jobs(cfg, jobs, pools=1, policy="random")
    return rung("random", sum(r.reward > 0 for r in records), len(records), time.perf_counter() - t0)


def zero_shot(cfg: WebRLConfig, name: str, tasks, episodes: int, model: str, out: Path, constrained: bool) -> dict:
    from webrl.evaluate import run_eval

    c = cfg.model_copy(deep=True)
    c.rollout.constrained = constrained
    t0 = time.perf_counter()
    summary = run_eval(c, tasks, episodes, model=model, out_dir=str(out / f"eval-{name}"))
    return rung(name, summary["successes"], summary["episodes"], time.perf_counter() - t0)


def webrl_run(config: str | None, sets: list[str], name: str, extra: list[str]) -> dict:
    """A ``webrl train`` run named ``name`` on the bench's config with ``extra`` overrides: its report."""
    from webrl.train import run_train

    return run_train(load_config(config, [*sets, f"train.run_name={name}", *extra]))


def phase_rungs(report: dict, key: str = "test") -> list[dict]:
    return [rung(f"phase {p['phase']}", p[key]["successes"], p[key]["episodes"], p["times"]["total"])
            for p in report["phases"] if p.get(key)]


def instance_rungs(report: dict) -> list[dict]:
    """SFT and each phase on unseen instances of the train tasks (``train.test_instances_per_task``); [] when
    the run did not evaluate them."""
    start = report.get("initial_instances")
    if not start:
        return []
    return [rung("sft", start["successes"], start["episodes"]), *phase_rungs(report, "test_instances")]


def _names(spec: str | None) -> list[str] | None:
    return spec.split(",") if spec else None


def run(args) -> dict:
    from envpool.suites import Suites

    suite, split = args.suite, HELD_OUT[args.suite]
    names = _names(args.tasks or DEFAULT_TEST[suite])
    train = _names(args.train_tasks or DEFAULT_TRAIN[suite])
    tmp_dir = tempfile.TemporaryDirectory(prefix="bench-learning-")
    tmp = Path(tmp_dir.name)
    sets = [f"run_dir={tmp}", f"train.suite={suite}", "train.train_split=train", f"train.test_split={split}",
            f"train.eval_episodes_per_task={args.episodes}", f"learner.phases={args.phases}",
            f"train.warm_start_seeds={args.demo_seeds}", "rollout.constrained=true", *args.overrides]
    for key, value in (("train.test_tasks", names), ("train.tasks", train)):  # [] (a whole split) replaces the preset's
        sets.append(f"{key}=[{','.join(value or [])}]")
    if args.tiny:
        from transformers import AutoTokenizer

        from actors.model_store import default_model_dir
        from tests.conftest import build_tiny_model

        build_tiny_model(AutoTokenizer.from_pretrained(default_model_dir(tokenizer_only=True)), tmp / "tiny-model")
        sets.append(f"rollout.model={tmp / 'tiny-model'}")
    cfg = load_config(args.config, sets)
    model = str(cfg.rollout.model)
    suites = Suites(cfg.env)
    try:
        tasks = suites.select(suite, names, split)
    finally:
        suites.close()
    log(f"learning ladder on {len(tasks)} held-out {suite} tasks x {args.episodes} episodes; {args.phases} phases")
    t0 = time.perf_counter()
    rungs = [random_floor(cfg, suite, names, split, args.episodes),
             zero_shot(cfg, "base", tasks, args.episodes, model, tmp, constrained=False),
             zero_shot(cfg, "grammar", tasks, args.episodes, model, tmp, constrained=True)]
    default = webrl_run(args.config, sets, "default", ["train.warm_start=sft"])
    start = default["initial"]
    rungs.append(rung("sft", start["successes"], start["episodes"], (default.get("warm_start") or {}).get("total_s")))
    rungs += phase_rungs(default)
    floor = rungs[0]["success_rate"]
    for r in rungs:
        r["over_random"] = r["success_rate"] / floor if floor and r["success_rate"] is not None else None
    result = {
        "benchmark": "learning", "suite": suite, "split": split, "tasks": [t.id for t in tasks],
        "episodes_per_task": args.episodes, "phases": args.phases,
        "model": "tiny (random, SmolLM2 tokenizer)" if args.tiny else model, "rungs": rungs,
        "last_minus_sft": rungs[-1]["success_rate"] - rungs[3]["success_rate"] if len(rungs) > 4 else None,
        "warm_start": {k: (default.get("warm_start") or {}).get(k) for k in ("demonstrations", "samples", "steps",
                                                                              "first_loss", "last_loss", "total_s")},
    }
    if instances := instance_rungs(default):
        result["instances"] = {"rungs": instances,
                               "last_minus_sft": instances[-1]["success_rate"] - instances[0]["success_rate"]}
    if args.ablation:
        other = webrl_run(args.config, sets, "ablation", [  # starts where the default did
            "train.warm_start=none", f"rollout.model={default['warm_start']['policy']}", "train.eval_initial=false",
            args.ablation])
        result["ablation"] = {"switch": args.ablation, "rungs": phase_rungs(other)}
    result["times_s"] = {"total": time.perf_counter() - t0}
    tmp_dir.cleanup()
    return result


def table(result: dict) -> str:
    rows = [(r["rung"], f"{r['successes']}/{r['episodes']}",
             f"{r['success_rate']:.0%}" if r["success_rate"] is not None else "-",
             f"{r['ci95'][0]:.0%}-{r['ci95'][1]:.0%}" if r["ci95"] else "-") for r in result["rungs"]]
    for r in (result.get("instances") or {}).get("rungs", []):
        rows.append((f"{r['rung']} (unseen instances of train tasks)", f"{r['successes']}/{r['episodes']}",
                     f"{r['success_rate']:.0%}", f"{r['ci95'][0]:.0%}-{r['ci95'][1]:.0%}"))
    for r in (result.get("ablation") or {}).get("rungs", []):
        rows.append((f"{r['rung']} ({result['ablation']['switch']})", f"{r['successes']}/{r['episodes']}",
                     f"{r['success_rate']:.0%}", f"{r['ci95'][0]:.0%}-{r['ci95'][1]:.0%}"))
    return "\n".join(f"{a:<40} {b:>8} {c:>6} {d:>10}" for a, b, c, d in [("rung", "success", "rate", "95% CI"), *rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line on stdout (progress goes to stderr)")
    ap.add_argument("--suite", choices=sorted(HELD_OUT), default="miniwob", help="miniwob (held-out tasks) or sandbox (test split)")
    ap.add_argument("--tasks", help="held-out task names, comma-separated (default: six MiniWoB++ held-out tasks; "
                    "the whole sandbox test split)")
    ap.add_argument("--train-tasks", help="seed task names of the train split, comma-separated (default: the README "
                    "baseline's 12 MiniWoB++ tasks; the whole sandbox train split)")
    ap.add_argument("--episodes", type=int, default=5, help="episodes per held-out task and rung")
    ap.add_argument("--phases", type=int, default=2, help="WebRL phases after the warm start")
    ap.add_argument("--demo-seeds", type=int, default=3, help="scripted MiniWoB++ episodes per train task for the warm start")
    ap.add_argument("--ablation", metavar="KEY=VALUE", help="a second WebRL run from the same SFT policy with this switch")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model with SmolLM2's tokenizer (smoke run)")
    ap.add_argument("--config", metavar="PRESET|PATH", help="a preset in configs/ or a YAML file; default: local")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key (repeatable), e.g. train.episodes_per_task=2")
    args = ap.parse_args()
    with contextlib.redirect_stdout(sys.stderr):  # the runs' tables and bars: stdout is the JSON line only
        result = run(args)
    out = sys.stdout
    print(json.dumps(result), file=out, flush=True)
    if not args.json:
        log(table(result))


if __name__ == "__main__":
    main()
