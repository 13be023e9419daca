"""Benchmark: the learner's update throughput against a bare torch training loop, weight-sync time
from the learner to two rollout engines, and peak memory.

- ``throughput_ratio``: supervised steps (``Learner.sft_step``: micro-batching, global normalisation,
  clipping, the non-finite check) against a bare loop on the same model and batches doing the same
  math (LM head at the action positions only, mean NLL, backward, clip, AdamW), tokens/s each, in the
  same process, interleaved runs, medians. ``speedup_vs_hf_labels_loop`` compares with the usual
  ``model(input_ids, labels=...)`` loop, whose logits cover every position.
- ``weight_sync_s``: ``LearnerGroup.publish(fleet)`` with two rollout workers (vLLM): one copy into
  Ray's object store from learner rank 0, both engines load it; wall seconds until both hold it.
  ``weight_sync_broadcast_s``: the same publish with ``rollout.weight_sync=broadcast`` (buckets of
  ``--bucket-mb`` from learner rank 0 over gloo on CPU / NCCL on GPU, engines loading as buckets arrive;
  the channel is formed before the timed runs), alternating with the object-store runs in one run.
  ``weight_sync_faster`` names the faster mode.
- ``peak_rss_gb`` of this process (CPU) or ``peak_cuda_gb`` (GPU) over the update runs.
- ``--strategy ddp|fsdp2`` (``learner.strategy``) runs our side as a ``LearnerGroup`` of ``--ranks``
  Ray actors (default 2; gloo on CPU, NCCL on GPU) splitting each batch, against the same bare loop on
  the whole batch in this process; ``rank_peak_gb`` is each rank's peak memory (FSDP2 shards it).
  Without ``--strategy`` ours runs in this process, one rank, as before.

    python bench/learner.py --json [--model DIR | --tiny] [--skip-sync | --sync-only [--bucket-mb MB]]
                            [--strategy ddp|fsdp2 [--ranks N]]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from learner.learner import Batch, Learner  # noqa: E402
from webrl.config import load_config  # noqa: E402


def _batches(vocab: int, n_batches: int, batch: int, prompt: int, action: int, seed: int = 0) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(0, vocab, (batch, prompt + action), generator=g)
        mask = torch.zeros_like(ids)
        mask[:, prompt:] = 1
        out.append(Batch(ids, torch.ones_like(ids), mask))
    return out


def _ours(model_dir: Path, cfg, batches: list[Batch]) -> float:
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    learner = Learner(policy, cfg.learner, micro_batch=cfg.learner.micro_batch)
    learner.sft_step(batches[0])  # warm-up (optimizer state)
    t0 = time.perf_counter()
    for b in batches:
        learner.sft_step(b)
    return time.perf_counter() - t0


class _Group:
    """Our side as N learner ranks on Ray, built once (start-up is not timed); ``__call__`` times the batches."""

    def __init__(self, model_dir: Path, cfg, ranks: int):
        import ray

        from learner.group import LearnerGroup

        cores = os.cpu_count() or 1
        ray.init(num_cpus=cores, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        gpus = 1 if torch.cuda.is_available() else 0
        self.group = LearnerGroup(ranks, str(model_dir), cfg.learner, micro_batch=cfg.learner.micro_batch,
                                  num_cpus_per_rank=max(1, cores // ranks), num_gpus_per_rank=gpus)

    def __call__(self, batches: list[Batch]) -> float:
        self.group.sft_step(batches[0])  # warm-up (optimizer state)
        t0 = time.perf_counter()
        for b in batches:
            self.group.sft_step(b)
        return time.perf_counter() - t0

    def close(self) -> list[float]:
        """Each rank's peak memory in GB; shuts the group and Ray down."""
        import ray

        peaks = self.group.peak_memory_gb()
        self.group.shutdown()
        ray.shutdown()
        return peaks


def _bare(model_dir: Path, cfg, batches: list[Batch], lean: bool) -> float:
    """A plain loop. ``lean``: the LM head only at the positions that predict action tokens (the same
    math as ours, none of its machinery); else the usual ``labels=`` loss (logits at every position)."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.learner.sft_lr)
    micro = cfg.learner.micro_batch

    def step(b: Batch) -> None:
        tokens = b.action_mask[:, 1:].sum()
        for i in range(0, len(b), micro):
            ids, mask = b.input_ids[i:i + micro], b.action_mask[i:i + micro]
            if lean:
                hidden = model.model(input_ids=ids).last_hidden_state[:, :-1][mask[:, 1:].bool()]
                logits = model.lm_head(hidden).float()
                nll = torch.nn.functional.cross_entropy(logits, ids[:, 1:][mask[:, 1:].bool()], reduction="sum") / tokens
            else:
                labels = ids.masked_fill(mask == 0, -100)
                nll = model(input_ids=ids, labels=labels).loss * mask[:, 1:].sum() / tokens
            nll.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.learner.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(batches[0])
    t0 = time.perf_counter()
    for b in batches:
        step(b)
    return time.perf_counter() - t0


def _weight_sync(model_dir: Path, cfg, runs: int = 3) -> dict:
    """Publish to two engines by the object store and by broadcast, alternating, each on a new version."""
    import ray

    from actors.fleet import RolloutFleet
    from learner.group import LearnerGroup

    ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        fleet = RolloutFleet(cfg, None, model_path=str(model_dir))
        fleet.wait_ready()
        group = LearnerGroup(1, str(model_dir), cfg.learner, num_cpus_per_rank=0.5)
        batch = _batches(AutoTokenizer.from_pretrained(model_dir).vocab_size, 1, 2, 32, 8)[0]
        times: dict[str, list[float]] = {"object_store": [], "broadcast": []}
        for i in range(runs + 1):  # the first round of each is a warm-up (the broadcast forms its channel)
            for mode in times:
                fleet.cfg.rollout.weight_sync = mode
                group.sft_step(batch)  # a new version to publish
                _, _, seconds = group.publish(fleet)
                if i:
                    times[mode].append(seconds)
        if fleet._channel is None or fleet._channel[1] is None:
            raise RuntimeError("the broadcast runs fell back to the object store (see the log): nothing to compare")
        group.shutdown()
        fleet.shutdown()
    finally:
        ray.shutdown()
    store, bcast = statistics.median(times["object_store"]), statistics.median(times["broadcast"])
    return {"weight_sync_s": store, "weight_sync_runs_s": times["object_store"],
            "weight_sync_broadcast_s": bcast, "weight_sync_broadcast_runs_s": times["broadcast"],
            "weight_sync_bucket_mb": cfg.rollout.weight_bucket_mb,
            "weight_sync_faster": "object_store" if store < bcast else "broadcast"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--model", help="a Hugging Face directory (default: the default model, SmolLM2-135M-Instruct)")
    ap.add_argument("--tiny", action="store_true", help="a tiny random model with the real tokenizer (smoke run)")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=384, help="prompt length (measured prompts: ~270-700)")
    ap.add_argument("--action-tokens", type=int, default=24)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-sync", action="store_true")
    ap.add_argument("--sync-only", action="store_true", help="measure the weight sync alone (no throughput runs)")
    ap.add_argument("--bucket-mb", type=float, help="rollout.weight_bucket_mb for the broadcast runs")
    ap.add_argument("--strategy", choices=["ddp", "fsdp2"], help="run ours as a LearnerGroup of --ranks ranks with "
                    "this learner.strategy (default: one rank in this process)")
    ap.add_argument("--ranks", type=int, default=2, help="learner ranks with --strategy (default: 2)")
    args = ap.parse_args()

    cfg = load_config("local", ["rollout.workers=2", "rollout.dtype=float32"]
                      + ([f"learner.strategy={args.strategy}"] if args.strategy else [])
                      + ([f"rollout.weight_bucket_mb={args.bucket_mb}"] if args.bucket_mb else []))
    if args.tiny:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import build_tiny_model

        from actors.model_store import default_model_dir

        model_dir = Path(tempfile.mkdtemp()) / "tiny"
        build_tiny_model(AutoTokenizer.from_pretrained(default_model_dir(tokenizer_only=True)), model_dir)
    else:
        from actors.model_store import resolve_model

        model_dir = resolve_model(args.model or cfg.rollout.model)
    if args.sync_only:
        result = {"bench": "learner", "model": str(model_dir)} | _weight_sync(model_dir, cfg)
        print(json.dumps(result) if args.json else json.dumps(result, indent=2))
        return 0
    vocab = AutoModelForCausalLM.from_pretrained(model_dir).config.vocab_size
    batches = _batches(vocab, args.batches, args.batch, args.prompt_tokens, args.action_tokens)
    tokens = sum(int(b.attention_mask.sum()) for b in batches)
    group = _Group(model_dir, cfg, args.ranks) if args.strategy else None
    ours, lean, hf = [], [], []
    for _ in range(args.runs):
        ours.append(group(batches) if group else _ours(model_dir, cfg, batches))
        lean.append(_bare(model_dir, cfg, batches, lean=True))
        hf.append(_bare(model_dir, cfg, batches, lean=False))
    ours_s, lean_s, hf_s = (statistics.median(x) for x in (ours, lean, hf))
    result = {
        "bench": "learner", "model": str(model_dir), "tokens_per_run": tokens,
        "strategy": args.strategy or "one process", "ranks": args.ranks if args.strategy else 1,
        "learner_tokens_per_s": tokens / ours_s, "bare_tokens_per_s": tokens / lean_s,
        "throughput_ratio": lean_s / ours_s,  # ours vs the same math in a plain loop: the cost of our machinery
        "hf_labels_tokens_per_s": tokens / hf_s,
        "speedup_vs_hf_labels_loop": hf_s / ours_s,  # vs the usual labels= loss (logits at every position)
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if torch.cuda.is_available():
        result["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    if group:
        result["rank_peak_gb"] = group.close()
    if not args.skip_sync:
        result |= _weight_sync(model_dir, cfg)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
