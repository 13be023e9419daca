"""Supervised warm start: demonstrations (episode records or trajectories) become prompt + action
samples for any model, the SFT step lowers the actions' NLL, and `webrl sft` writes a checkpoint whose
policy then writes the demonstrated action."""

from __future__ import annotations

import json

import pytest

from actors.engine import Sampling, make_engine
from envpool.actions import parse_action
from learner.sft import demo_samples, load_demos, sft_batches
from webrl.config import load_config
from webrl.types import EnvStep, EpisodeRecord, EpisodeStatus, Observation

PAGES = [Observation(url="http://127.0.0.1/p", html=f'<p>page {i}</p><button id="{i}">Go {i}</button>', element_count=1)
         for i in range(3)]
ACTIONS = ['do(action="Click", element="0")', 'do(action="Type", argument="kate", element="1")']


def _record(reward: float = 1.0) -> EpisodeRecord:
    steps = [EnvStep(action=parse_action(a), observation=PAGES[i + 1]) for i, a in enumerate(ACTIONS)]
    return EpisodeRecord(episode_id="e", task_id="miniwob/x", instruction="Do the thing", first_observation=PAGES[0],
                         steps=steps, status=EpisodeStatus.done, reward=reward)


@pytest.fixture
def demo_file(tmp_path):
    path = tmp_path / "demos.jsonl"
    path.write_text(_record().model_dump_json() + "\n" + _record(reward=-1.0).model_dump_json() + "\n")
    return path


def test_records_become_rounds_of_the_page_each_action_was_taken_on(demo_file):
    demos = load_demos([demo_file])
    assert len(demos) == 1  # the failed episode is left out
    assert [obs.html for obs, _ in demos[0].rounds] == [PAGES[0].html, PAGES[1].html]
    assert [a for _, a in demos[0].rounds] == ACTIONS
    assert len(load_demos([demo_file], successful_only=False)) == 2


def test_samples_end_with_the_action_and_the_end_of_turn_token(demo_file, tokenizer):
    samples = demo_samples(load_demos([demo_file]), tokenizer, max_tokens=2048)
    ids, prompt_len = samples[1]
    target = tokenizer.decode(ids[prompt_len:], skip_special_tokens=False)
    assert target == ACTIONS[1] + tokenizer.eos_token
    prompt = tokenizer.decode(ids[:prompt_len])
    assert PAGES[1].html in prompt and PAGES[0].html not in prompt and ACTIONS[0] in prompt  # earlier round: its output
    batch = sft_batches(samples, 2, tokenizer.eos_token_id)[0]
    assert int(batch.action_mask.sum()) == sum(len(i) - p for i, p in samples)


def test_bad_demonstration_files_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"hello": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1 is neither a trajectory nor an episode record"):
        load_demos([bad])
    with pytest.raises(FileNotFoundError, match="no demonstrations"):
        load_demos([tmp_path / "missing"])


def test_webrl_sft_teaches_the_demonstrated_actions(demo_file, tiny_model_dir, tokenizer, tmp_path):
    from webrl.cli import main

    out = tmp_path / "ckpt"
    rc = main(["sft", "--data", str(demo_file), "--model", str(tiny_model_dir), "--out", str(out), "--epochs", "60",
               "--config", "tiny", "--set", "learner.sft_lr=0.003", "--set", "learner.sft_batch_size=2"])
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "sft" and manifest["step"] == 60
    samples = demo_samples(load_demos([demo_file]), tokenizer, max_tokens=2048)
    engine = make_engine(load_config("tiny", ["rollout.dtype=float32"]), out / "policy", engine="transformers")
    try:
        for (ids, prompt_len), action in zip(samples, ACTIONS):
            gen = engine.submit(ids[:prompt_len], Sampling(temperature=0.0, max_tokens=40)).result(timeout=60)
            assert gen.text == action and gen.finish_reason == "stop"
    finally:
        engine.close()


def test_sft_resume_continues_the_same_run(demo_file, tiny_model_dir, tmp_path):
    """2 epochs straight == 1 epoch, then --resume for the second: same weights, optimizer state, step."""
    import torch
    from safetensors.torch import load_file

    from webrl.cli import main

    common = ["--data", str(demo_file), "--model", str(tiny_model_dir), "--include-failures", "--config", "tiny",
              "--set", "learner.sft_lr=0.003", "--set", "learner.sft_batch_size=1"]  # 4 steps an epoch
    assert main(["sft", *common, "--out", str(tmp_path / "straight"), "--epochs", "2"]) == 0
    assert main(["sft", *common, "--out", str(tmp_path / "first"), "--epochs", "1"]) == 0
    assert json.loads((tmp_path / "first" / "manifest.json").read_text())["step"] == 4
    assert main(["sft", *common, "--resume", str(tmp_path / "first"), "--out", str(tmp_path / "resumed"),
                 "--epochs", "2"]) == 0
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    for name in ("manifest.json",):
        a, b = json.loads((straight / name).read_text()), json.loads((resumed / name).read_text())
        assert a["step"] == b["step"] == 8 and a["version"] == b["version"] == 8
    want, got = (load_file(f / "policy" / "model.safetensors") for f in (straight, resumed))
    assert set(want) == set(got) and all(torch.allclose(want[k], got[k], atol=1e-6) for k in want)
    want, got = (torch.load(f / "optimizer.pt", weights_only=True)["sft"] for f in (straight, resumed))
    assert want["param_groups"] == got["param_groups"]
    for name, state in want["state"].items():
        assert int(state["step"]) == int(got["state"][name]["step"]) == 8
        assert torch.allclose(state["exp_avg_sq"], got["state"][name]["exp_avg_sq"], atol=1e-9), name
    # other data, other batches, or a checkpoint of another kind: refused with the reason
    again = ["sft", "--resume", str(resumed), "--out", str(tmp_path / "again"), "--epochs", "3"]
    with pytest.raises(ValueError, match="demonstrations differ"):
        main([*again, *[a for a in common if a != "--include-failures"]])
    with pytest.raises(ValueError, match="sft_batch_size=1 and seed=0, this run has 2"):
        main([*again, *common[:-1], "learner.sft_batch_size=2"])
    manifest = json.loads((resumed / "manifest.json").read_text())
    (resumed / "manifest.json").write_text(json.dumps({**manifest, "kind": "phase"}))
    with pytest.raises(ValueError, match="not a checkpoint of `webrl sft`"):
        main([*again, *common])


def test_the_warm_start_trains_on_the_learner_group_as_one_process_would(demo_file, tiny_model_dir, tmp_path):
    """`webrl train`'s warm start runs `webrl sft` on the learner group: Ray actors on
    ray.placement.learner_rank (an 8B model's GPU nodes, not the driver's head node), gone when it ends; two
    ranks (ddp over gloo) train as one process does on the same batches. (On a cluster the ranks are GPU
    processes under NCCL; the CPU ranks here run the same code path with gloo.)"""
    import ray
    import torch
    from ray.util.state import list_actors
    from safetensors.torch import load_file

    from webrl.finetune import run_sft
    from webrl.train_warm_start import warm_start

    sets = [f"train.warm_start_demos={demo_file}", f"rollout.model={tiny_model_dir}", "train.warm_start=sft",
            "train.learner_ranks=2", "ray.placement.learner_rank={webrl_learner: 1}", "learner.sft_epochs=3",
            "learner.sft_lr=0.003", "learner.sft_batch_size=2", "learner.micro_batch=1"]
    cfg = load_config("tiny", sets)
    ray.init(num_cpus=4, resources={"webrl_learner": 2}, _node_ip_address="127.0.0.1")  # the state API needs the dashboard
    try:
        warm = warm_start(cfg, tmp_path / "run")
        ranks = list_actors(filters=[("class_name", "=", "LearnerRank")], detail=True)
    finally:
        ray.shutdown()
    assert len(ranks) == 2 and {r.state for r in ranks} == {"DEAD"}
    assert all(r.required_resources.get("webrl_learner") == 1 for r in ranks)
    assert warm["steps"] == 3 and warm["policy"] == str(tmp_path / "run" / "warm-start" / "policy")
    assert json.loads((tmp_path / "run" / "warm-start" / "manifest.json").read_text())["kind"] == "sft"
    one = run_sft(cfg, [str(demo_file)], model=str(tiny_model_dir), out=str(tmp_path / "one"))
    want, got = (load_file(f"{p}/model.safetensors") for p in (one["policy"], warm["policy"]))
    # the same steps: the same losses, and weights within a fraction of one Adam step (lr 3e-3) of each other
    # (gloo sums the ranks' gradients in another order; ranks that skipped the all-reduce would differ by steps)
    assert warm["last_loss"] == pytest.approx(one["last_loss"], rel=1e-5) and warm["last_loss"] < warm["first_loss"]
    assert set(want) == set(got) and all(torch.allclose(want[k], got[k], atol=1e-3, rtol=0) for k in want)
    base = load_file(f"{tiny_model_dir}/model.safetensors")
    assert any(not torch.allclose(base[k], got[k]) for k in base)  # it trained
