"""The bucketed weight broadcast (actors/weight_broadcast.py): the bucket plan, pack/unpack round trips,
and a real gloo group of a sender and two receiver processes (the NCCL path's logic on CPU); NCCL
itself under the ``gpu`` marker."""

from __future__ import annotations

import io
import multiprocessing as mp

import pytest
import torch

from actors.weight_broadcast import (ALIGN, ChannelSpec, WeightChannel, WeightPlan, make_plan, open_store, pack,
                                     plan_buckets, split_aliases, unpack)

MB = 2**20


def _mixed() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.fp32": torch.randn(3, 5, generator=g),
        "b.bf16": torch.randn(7, generator=g).to(torch.bfloat16),
        "c.fp16": torch.randn(2, 3, 4, generator=g).to(torch.float16),
        "d.int64": torch.randint(-9, 9, (6,), generator=g),
        "e.int8": torch.randint(-100, 100, (5,), generator=g, dtype=torch.int8),
        "f.bool": torch.tensor([True, False, True]),
        "g.scalar": torch.tensor(3.5),
        "h.strided": torch.randn(4, 6, generator=g).t(),  # not contiguous
    }


def test_the_plan_keeps_order_caps_buckets_and_gives_a_big_tensor_its_own():
    specs = [("s1", (100,), torch.float32), ("s2", (100,), torch.float32), ("big", (1000,), torch.float32),
             ("s3", (10,), torch.bfloat16), ("s4", (250,), torch.float32)]
    buckets = plan_buckets(specs, bucket_bytes=1024)
    assert [[s.name for s in b.slots] for b in buckets] == [["s1", "s2"], ["big"], ["s3"], ["s4"]]
    assert buckets[1].nbytes == 4000 > 1024  # alone in an oversized bucket
    assert all(b.nbytes <= 1024 for i, b in enumerate(buckets) if i != 1)
    assert buckets[0].slots[1].offset == 448 and buckets[0].nbytes == 848  # 400 bytes rounded up to ALIGN
    assert all(s.offset % ALIGN == 0 for b in buckets for s in b.slots)
    with pytest.raises(ValueError, match="positive"):
        plan_buckets(specs, 0)


def test_pack_unpack_round_trips_mixed_dtypes_bit_for_bit():
    tensors = _mixed()
    plan, unique = make_plan(tensors, version=3, bucket_bytes=256)
    assert len(plan.buckets) > 1
    plan = WeightPlan.from_json(plan.to_json())  # as the receivers read it from the store
    out = {}
    for bucket in plan.buckets:
        buf = pack(bucket, unique)
        assert buf.dtype == torch.uint8 and buf.numel() == bucket.nbytes
        out.update(unpack(bucket, buf))
    assert list(out) == list(tensors)
    for k, t in tensors.items():
        assert out[k].dtype == t.dtype and out[k].shape == t.shape
        assert torch.equal(out[k].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8)), k


def test_tied_tensors_travel_once_and_a_wrong_tensor_is_refused():
    emb = torch.randn(10, 4)
    unique, aliases = split_aliases({"embed": emb, "lm_head": emb, "other": emb.clone()})
    assert list(unique) == ["embed", "other"] and aliases == (("lm_head", "embed"),)
    plan, unique = make_plan({"x": torch.zeros(3)}, 0, MB)
    with pytest.raises(ValueError, match="plan says"):
        pack(plan.buckets[0], {"x": torch.zeros(4)})


def _tiny_state() -> dict[str, torch.Tensor]:
    """A tiny language model's weights (tied embedding and head, bf16) plus an fp32 tensor: mixed dtypes."""
    torch.manual_seed(0)
    emb = torch.nn.Embedding(96, 32)
    head = torch.nn.Linear(32, 96, bias=False)
    head.weight = emb.weight
    model = torch.nn.ModuleDict({"embed": emb, "mlp": torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.Linear(64, 32)),
                                 "norm": torch.nn.LayerNorm(32), "head": head})
    state = model.to(torch.bfloat16).state_dict(keep_vars=False)
    state["extra.fp32"] = torch.arange(10, dtype=torch.float32)
    return state


def _receiver(spec: ChannelSpec, rank: int, out: mp.Queue) -> None:
    if spec.backend == "nccl":
        torch.cuda.set_device(rank)  # one GPU per member
    channel = WeightChannel(spec, rank)
    got = []
    for _ in range(2):  # two rounds on one channel
        received = channel.receive()
        got.append((received.version, received.keys(), {k: v.cpu().clone() for k, v in received.items()}))
    buf = io.BytesIO()
    torch.save(got, buf)  # as bytes: tensors through a Queue would share memory with a process that exits
    out.put((rank, buf.getvalue()))
    channel.close()


def _broadcast(backend: str, receivers: int = 2) -> None:
    state = _tiny_state()
    if backend == "nccl":
        state = {k: v.cuda() for k, v in state.items()}
    store = open_store("127.0.0.1", receivers + 1, timeout_s=60)
    spec = ChannelSpec("127.0.0.1", store.port, receivers + 1, backend, bucket_bytes=8 * 1024, timeout_s=60)
    ctx = mp.get_context("spawn" if backend == "nccl" else "fork")  # CUDA needs spawn; fork skips re-imports
    out = ctx.Queue()
    procs = [ctx.Process(target=_receiver, args=(spec, r, out)) for r in range(1, receivers + 1)]
    for p in procs:
        p.start()
    try:
        sender = WeightChannel(spec, 0, store=store)
        plan = sender.send(state, version=5)
        assert len(plan.buckets) >= 3 and ("head.weight", "embed.weight") in plan.aliases
        state2 = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
        sender.send(state2, version=6)
        results = {rank: torch.load(io.BytesIO(data)) for rank, data in (out.get(timeout=120) for _ in procs)}
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    assert sorted(results) == list(range(1, receivers + 1))
    for rank, rounds in results.items():
        assert [v for v, _, _ in rounds] == [5, 6]
        for (_, keys, got), sent in zip(rounds, (state, state2)):
            assert sorted(keys) == sorted(sent) == sorted(got)
            for k, t in sent.items():
                assert got[k].dtype == t.dtype and torch.equal(got[k].cpu(), t.cpu()), (rank, k)


def test_gloo_broadcast_reaches_two_receiver_processes_in_several_buckets():
    _broadcast("gloo")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 3,
                    reason="NCCL between 3 processes needs 3 GPUs (one per member)")
def test_nccl_broadcast_reaches_two_receivers():
    _broadcast("nccl")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pack_unpack_on_cuda_round_trips_from_cpu_and_cuda_tensors():
    tensors = _mixed() | {"on.gpu": torch.randn(5, 5, device="cuda")}
    plan, unique = make_plan(tensors, version=1, bucket_bytes=512)
    out = {}
    for bucket in plan.buckets:
        out.update({k: v.cpu() for k, v in unpack(bucket, pack(bucket, unique, "cuda"))})
    assert all(torch.equal(out[k], t.cpu()) for k, t in tensors.items())
