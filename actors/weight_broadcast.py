"""Bucketed collective weight broadcast from learner rank 0 to the rollout engines.

The learner's tensors are packed into flat byte buckets of at most ``rollout.weight_bucket_mb`` (mixed
dtypes as raw bytes; a tensor larger than a bucket gets one of its own) and each bucket goes out in one
``broadcast`` from rank 0 over a process group of its own: learner rank 0 is rank 0, the N engines are
ranks 1..N, on a private ``TCPStore`` (the learners' default group serves DDP/FSDP, the engines have
none). The group is ``ProcessGroupNCCL`` when the tensors live on CUDA and ``ProcessGroupGloo`` on CPU:
one code path, so the CPU tests exercise the GPU path's logic.

A receiver reads the round's plan (names, shapes, dtypes, offsets) from the store, then yields
``(name, tensor)`` bucket by bucket: an engine loads while it receives, with at most one bucket extra
in memory. Every member must take part in every round (it is a collective): a consumer that stops
early calls :meth:`ReceivedWeights.drain`.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Iterable, Iterator, Mapping

import torch

log = logging.getLogger(__name__)

ALIGN = 64  # bytes: every tensor starts at a multiple of this in its bucket, so any dtype views it in place
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


# ---- the bucket plan (pure) --------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    """One tensor's place in a bucket."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # torch dtype name without the "torch." prefix, e.g. "bfloat16"
    offset: int  # bytes from the bucket's start
    nbytes: int


@dataclass(frozen=True)
class Bucket:
    slots: tuple[Slot, ...]
    nbytes: int  # the flat buffer's size


@dataclass(frozen=True)
class WeightPlan:
    """What one broadcast round carries: the buckets in order, and names that alias another tensor
    (tied weights travel once)."""

    version: int
    buckets: tuple[Bucket, ...]
    aliases: tuple[tuple[str, str], ...] = ()  # (alias, name it shares storage with)

    def names(self) -> list[str]:
        return [s.name for b in self.buckets for s in b.slots] + [a for a, _ in self.aliases]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "WeightPlan":
        d = json.loads(text)
        buckets = tuple(Bucket(tuple(Slot(s["name"], tuple(s["shape"]), s["dtype"], s["offset"], s["nbytes"])
                                     for s in b["slots"]), b["nbytes"]) for b in d["buckets"])
        return cls(d["version"], buckets, tuple((a, n) for a, n in d["aliases"]))


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def to_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown tensor dtype {name!r} in a weight plan")
    return dtype


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_buckets(specs: Iterable[tuple[str, tuple[int, ...], torch.dtype]], bucket_bytes: int) -> tuple[Bucket, ...]:
    """Pack (name, shape, dtype) in the order given into buckets of at most ``bucket_bytes`` (each tensor
    at an ``ALIGN``-byte offset); a tensor larger than a bucket gets a bucket of its own."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket_bytes must be positive, not {bucket_bytes}")
    buckets, slots, end = [], [], 0
    for name, shape, dtype in specs:
        nbytes = to_dtype(dtype_name(dtype)).itemsize * int(torch.Size(shape).numel())
        offset = _aligned(end)
        if slots and offset + nbytes > bucket_bytes:
            buckets.append(Bucket(tuple(slots), end))
            slots, offset = [], 0
        slots.append(Slot(name, tuple(int(d) for d in shape), dtype_name(dtype), offset, nbytes))
        end = offset + nbytes
    if slots:
        buckets.append(Bucket(tuple(slots), end))
    return tuple(buckets)


def split_aliases(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[tuple[str, str], ...]]:
    """The tensors that own their data, and (alias, name) for names that are the very same tensor view as an
    earlier one (tied embeddings): those travel once."""
    unique, aliases, seen = {}, [], {}
    for name, t in tensors.items():
        key = (t.device, t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride())) if t.numel() else None
        if key is not None and key in seen:
            aliases.append((name, seen[key]))
            continue
        if key is not None:
            seen[key] = name
        unique[name] = t
    return unique, tuple(aliases)


def make_plan(tensors: Mapping[str, torch.Tensor], version: int, bucket_bytes: int) -> tuple[WeightPlan, dict]:
    """The plan for sending ``tensors`` (in their order), and the tensors that travel (aliases left out)."""
    unique, aliases = split_aliases(tensors)
    plan = WeightPlan(version, plan_buckets(((k, tuple(v.shape), v.dtype) for k, v in unique.items()), bucket_bytes),
                      aliases)
    return plan, unique


def pack(bucket: Bucket, tensors: Mapping[str, torch.Tensor], device: torch.device | str = "cpu") -> torch.Tensor:
    """The sender's side: one flat uint8 buffer on ``device`` holding the bucket's tensors' raw bytes."""
    buf = torch.empty(bucket.nbytes, dtype=torch.uint8, device=device)
    for s in bucket.slots:
        t = tensors[s.name]
        if dtype_name(t.dtype) != s.dtype or tuple(t.shape) != s.shape:
            raise ValueError(f"{s.name} is {tuple(t.shape)} {t.dtype}, the plan says {s.shape} {s.dtype}")
        _view(buf, s).copy_(t.detach())
    return buf


def unpack(bucket: Bucket, buffer: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    """The receiver's side: (name, tensor) views into ``buffer``, in the bucket's order (no copy)."""
    for s in bucket.slots:
        yield s.name, _view(buffer, s)


def _view(buf: torch.Tensor, s: Slot) -> torch.Tensor:
    return buf[s.offset:s.offset + s.nbytes].view(to_dtype(s.dtype)).view(s.shape)


# ---- the process group --------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelSpec:
    """Everything a member needs to join: where the store listens, how many members, which backend."""

    host: str
    port: int
    world: int  # 1 sender + the engines
    backend: str  # nccl | gloo
    bucket_bytes: int
    timeout_s: float


def device_identity() -> str | None:
    """This process's GPU as ``<ray node id>/<GPU uuid>`` (None without CUDA): two members with the same
    identity share a GPU, which NCCL cannot connect."""
    if not torch.cuda.is_available():
        return None
    node = "local"
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return f"{node}/{torch.cuda.get_device_properties(torch.cuda.current_device()).uuid}"


def local_address(store_host: str) -> str:
    """The address this member's gloo connections use: loopback when the store is on loopback, else this
    node's address as Ray knows it (or as the host name resolves)."""
    if store_host in LOOPBACK:
        return "127.0.0.1"
    try:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    except ImportError:
        pass
    return socket.gethostbyname(socket.gethostname())


def open_store(host: str, world: int, timeout_s: float) -> torch.distributed.TCPStore:
    """The channel's store on the sender's node, on a free port (read it from ``store.port``)."""
    from torch.distributed import TCPStore

    return TCPStore(host, 0, world, is_master=True, timeout=timedelta(seconds=timeout_s), wait_for_workers=False)


def _new_group(spec: ChannelSpec, store, rank: int):
    import torch.distributed as dist

    timeout = timedelta(seconds=spec.timeout_s)
    if spec.backend == "gloo":
        opts = dist.ProcessGroupGloo._Options()
        opts._timeout = timeout
        opts._devices = [dist.ProcessGroupGloo.create_device(hostname=local_address(spec.host))]
        return dist.ProcessGroupGloo(store, rank, spec.world, opts)
    nccl = getattr(dist, "ProcessGroupNCCL", None)
    if nccl is None or not torch.cuda.is_available():
        raise RuntimeError("the weight channel uses NCCL (the learner is on CUDA) but this process has no CUDA "
                           "torch: give the rollout workers GPUs (rollout.worker_gpus) or set "
                           "rollout.weight_sync=object_store")
    opts = nccl.Options()
    opts._timeout = timeout
    return nccl(store, rank, spec.world, opts)


class WeightChannel:
    """One member of the broadcast group: rank 0 sends (:meth:`send`), the others receive
    (:meth:`receive`). Rounds are counted on every member; round n's plan is the store's key ``plan/n``."""

    def __init__(self, spec: ChannelSpec, rank: int, store=None):
        from torch.distributed import PrefixStore, TCPStore

        self.spec, self.rank, self.rounds = spec, rank, 0
        self.store = store if store is not None else TCPStore(
            spec.host, spec.port, spec.world, is_master=False, timeout=timedelta(seconds=spec.timeout_s))
        self.device = torch.device("cuda", torch.cuda.current_device()) if spec.backend == "nccl" else torch.device("cpu")
        self.group = _new_group(spec, PrefixStore("webrl-weights", self.store), rank)

    def _broadcast(self, buf: torch.Tensor) -> None:
        import torch.distributed as dist

        opts = dist.BroadcastOptions()
        opts.rootRank, opts.rootTensor = 0, 0
        self.group.broadcast([buf], opts).wait()

    def send(self, tensors: Mapping[str, torch.Tensor], version: int) -> WeightPlan:
        """Rank 0: publish the round's plan in the store, then one broadcast per bucket."""
        if self.rank != 0:
            raise RuntimeError("only rank 0 of the weight channel sends")
        try:
            plan, unique = make_plan(tensors, version, self.spec.bucket_bytes)
        except Exception as e:
            self.fail_round(f"{type(e).__name__}: {e}")  # the receivers are waiting for this round's plan
            raise
        self.store.set(f"plan/{self.rounds}", plan.to_json())
        self.rounds += 1
        for bucket in plan.buckets:
            self._broadcast(pack(bucket, unique, self.device))
        return plan

    def fail_round(self, reason: str) -> None:
        """Rank 0, when it cannot send this round: the receivers stop waiting and raise ``reason``."""
        self.store.set(f"plan/{self.rounds}", json.dumps({"error": reason}))
        self.rounds += 1

    def receive(self) -> "ReceivedWeights":
        """Ranks 1..N: the next round (waits for its plan); its tensors arrive as they are iterated."""
        text = self.store.get(f"plan/{self.rounds}").decode()
        self.rounds += 1
        if "error" in json.loads(text):
            raise RuntimeError(f"the learner could not send this round of weights: {json.loads(text)['error']}")
        return ReceivedWeights(WeightPlan.from_json(text), self)

    def close(self) -> None:
        group, self.group = getattr(self, "group", None), None
        if group is not None and hasattr(group, "shutdown"):
            try:
                group.shutdown()
            except Exception:  # noqa: BLE001 - a peer already gone: nothing left to release
                pass


class ReceivedWeights:
    """One round on the receiving side, shaped like a state dict that arrives lazily: ``keys()`` from the
    plan at once, ``items()`` receives bucket by bucket (each bucket's buffer lives until the consumer
    drops its views). Iterate it once; :meth:`drain` takes what is left (a failed load must still finish
    the collective)."""

    def __init__(self, plan: WeightPlan, channel: WeightChannel):
        self.plan, self.version, self._channel = plan, plan.version, channel
        self._next = 0  # buckets received so far

    def keys(self) -> list[str]:
        return self.plan.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        aliases: dict[str, list[str]] = {}
        for alias, name in self.plan.aliases:
            aliases.setdefault(name, []).append(alias)
        for bucket in self._buckets():
            for name, tensor in unpack(bucket, self._buf):
                yield name, tensor
                for alias in aliases.get(name, []):
                    yield alias, tensor
            self._buf = None

    def _buckets(self) -> Iterator[Bucket]:
        while self._next < len(self.plan.buckets):
            bucket = self.plan.buckets[self._next]
            self._buf = torch.empty(bucket.nbytes, dtype=torch.uint8, device=self._channel.device)
            self._channel._broadcast(self._buf)
            self._next += 1
            yield bucket

    def drain(self) -> None:
        """Receive and drop whatever buckets have not arrived yet."""
        for _ in self._buckets():
            self._buf = None
