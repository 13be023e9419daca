"""LearnerGroup: N learner ranks as Ray actors joined by torch.distributed (gloo on CPU, NCCL on GPU).

Each rank builds the same policy (a model directory, or a config dict for a tiny test model, under the
same seed) and takes its shard of every batch; under ddp the ranks stay identical, under fsdp2 each keeps
its shard of every parameter. Whatever reads whole weights (publishing, checkpoints, the state getters)
runs on every rank, since under fsdp2 it is a gather; rank 0's answer is returned. The actor classes are
thin shells over :class:`learner.learner.Learner`.
"""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist

from actors.weight_broadcast import ChannelSpec, WeightChannel, device_identity, open_store
from learner import metrics
from learner.checkpoint import load_checkpoint, save_checkpoint
from learner.learner import Batch, Learner
from learner.lora import merged
from learner.parallel import full_state_dict, is_sharded, shards_from_cpu
from webrl.config import LearnerConfig, WebRLConfig


def build_policy(spec: str | dict, seed: int = 0):
    """A causal LM from a Hugging Face directory, or a randomly initialised Llama from a config dict; in
    fp32 whatever dtype the checkpoint was saved in (transformers keeps the saved one): these are the master
    weights the optimizer updates, and bf16 ones would round away updates as small as lr 1e-6 makes. bf16
    compute comes from ``learner.precision`` (autocast, FSDP2's MixedPrecisionPolicy)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if isinstance(spec, dict):
        return LlamaForCausalLM(LlamaConfig(**spec))
    return AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)


def policy_weights(policy: torch.nn.Module) -> dict:
    """The policy's whole weights by Hugging Face name on the CPU (adapters merged; on rank 0, gathered if
    sharded): what rollout engines load."""
    return full_state_dict(merged(policy))


class LearnerRank:
    def __init__(self, rank: int, world: int, address: str, policy: str | dict, cfg: LearnerConfig,
                 micro_batch: int, seed: int):
        self.rank, self.world = rank, world
        if world > 1:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=world)
        torch.manual_seed(seed)
        model = build_policy(policy, seed)
        if torch.cuda.is_available() and not shards_from_cpu(cfg.strategy, world):
            model = model.to("cuda")  # Ray gives each rank its own GPU: cuda:0 here
        self.learner = Learner(model, cfg, micro_batch=micro_batch)

    def actor_step(self, batch: Batch) -> dict:
        return self.learner.actor_step(batch.shard(self.rank, self.world))

    def critic_step(self, batch: Batch) -> dict:
        return self.learner.critic_step(batch.shard(self.rank, self.world))

    def sft_step(self, batch: Batch) -> dict:
        return self.learner.sft_step(batch.shard(self.rank, self.world))

    def new_phase(self) -> None:
        self.learner.new_phase()

    def policy_state(self) -> dict:
        """The policy's whole weights on rank 0 ({} on the others)."""
        return self.learner.full_policy_state()

    def critic_state(self) -> dict:
        return full_state_dict(self.learner.critic)

    def peak_memory_gb(self) -> float:
        """This rank's peak memory: CUDA allocations on a GPU, else the process's peak RSS."""
        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**30
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    def local_policy_state(self) -> dict:
        """This rank's own tensors (under fsdp2: its shards), to check what each rank holds."""
        from torch.distributed.tensor import DTensor

        return {k: (v.to_local() if isinstance(v, DTensor) else v).detach().cpu().clone()
                for k, v in self.learner.policy.state_dict().items()}

    def publish_weights(self) -> tuple[int, list] | None:
        """Rank 0 puts the policy's whole weights in Ray's object store once; returns (version,
        [ObjectRef]) (the ref in a list so that Ray hands it on instead of resolving it); None elsewhere."""
        import ray

        weights = self.learner.full_policy_state()
        return (self.learner.version, [ray.put(weights)]) if self.rank == 0 else None

    # ---- broadcast to the rollout engines (actors/weight_broadcast.py) ---------------------------
    def weight_device(self) -> str | None:
        """This rank's GPU (None on CPU): decides NCCL or gloo, and whether an engine shares the GPU."""
        return device_identity()

    def open_weight_store(self, world: int, timeout_s: float) -> tuple[str, int]:
        """Rank 0: a store for a new weight channel of ``world`` members on this node, on a free port (any
        earlier channel is closed); returns (host, port) for the members to join."""
        import ray

        self._close_weight_channel()
        host = ray.util.get_node_ip_address()
        self._weight_store = open_store(host, world, timeout_s)
        return host, self._weight_store.port

    def join_weight_channel(self, spec: ChannelSpec) -> None:
        """Rank 0 joins the channel as its rank 0 (returns once every engine has joined too)."""
        self._weight_channel = WeightChannel(spec, 0, store=self._weight_store)

    def _close_weight_channel(self) -> None:
        channel = getattr(self, "_weight_channel", None)
        if channel is not None:
            channel.close()
        self._weight_channel = self._weight_store = None

    def broadcast_weights(self) -> tuple[int, list, str | None] | None:
        """Every rank (under fsdp2 the whole weights are a gather); rank 0 broadcasts them to the engines,
        bucket by bucket from where they live (unsharded: the parameters themselves, on the GPU), then puts a
        CPU copy in the object store for workers that join later. Returns (version, [ObjectRef], the error
        that stopped the broadcast or None) on rank 0, None elsewhere."""
        import ray

        module = merged(self.learner.policy)
        sharded = is_sharded(module)
        state = full_state_dict(module) if sharded else None  # a collective: every rank
        if self.rank != 0:
            return None
        version, error = self.learner.version, None
        channel = getattr(self, "_weight_channel", None)
        try:
            if channel is None:
                raise RuntimeError("no weight channel: RolloutFleet.weight_channel forms it before a broadcast")
            channel.send(state if sharded else module.state_dict(), version)
        except Exception as e:  # noqa: BLE001 - the engines get this version from the object store instead
            error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self._close_weight_channel()  # a broken round leaves the channel unusable: the fleet forms a new one
        return version, [ray.put(state if sharded else full_state_dict(module))], error

    def save(self, folder: str, phase: int, step: int, tokenizer_dir: str | None = None,
             extra: dict | None = None) -> str | None:
        tokenizer = None
        if tokenizer_dir and self.rank == 0:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        written = save_checkpoint(folder, self.learner, tokenizer=tokenizer, phase=phase, step=step, extra=extra)
        return str(written) if written else None

    def load(self, folder: str) -> dict:
        return load_checkpoint(folder, self.learner)

    def shutdown(self) -> None:
        """What a rank holds beyond this process's memory: its weight channel (a rank in the caller's own
        process, as `webrl sft` runs one, ends with this; a Ray rank is killed by its group)."""
        self._close_weight_channel()


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LearnerGroup:
    """Drives N :class:`LearnerRank` actors in lock step; results come from rank 0."""

    rank_class = LearnerRank  # a subclass of LearnerGroup may run a LearnerRank subclass that answers more

    def __init__(self, ranks: int, policy: str | dict, cfg: LearnerConfig, *, micro_batch: int = 4, seed: int = 0,
                 num_cpus_per_rank: float = 1, num_gpus_per_rank: float = 0, host: str = "127.0.0.1",
                 resources: dict[str, float] | None = None, threads: int = 0):
        """``resources``: custom Ray resources each rank asks for (``ray.placement.learner_rank``); ``threads``:
        torch's CPU threads in each rank (OMP_NUM_THREADS), 0: this machine's cores shared among the ranks."""
        import ray

        from webrl.cluster import placement_options

        self._ray = ray
        address = f"{host}:{_free_port(host)}"
        threads = threads or max(1, (os.cpu_count() or 1) // ranks)  # Ray would give a 1-CPU actor one thread
        actor = ray.remote(num_cpus=num_cpus_per_rank, num_gpus=num_gpus_per_rank,
                           runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
                           **placement_options(resources or {}))(self.rank_class)
        self.ranks = [actor.remote(r, ranks, address, policy, cfg, micro_batch, seed) for r in range(ranks)]

    @classmethod
    def for_run(cls, policy: str | dict, cfg: WebRLConfig):
        """The group ``webrl train`` runs (its warm start and its phases): ``train.learner_ranks`` ranks of
        ``train.learner_cpus_per_rank``/``learner_gpus_per_rank`` on ``ray.placement.learner_rank``."""
        tc, lc = cfg.train, cfg.learner
        return cls(tc.learner_ranks, policy, lc, micro_batch=lc.micro_batch, seed=cfg.seed,
                   num_cpus_per_rank=tc.learner_cpus_per_rank, num_gpus_per_rank=tc.learner_gpus_per_rank,
                   resources=cfg.ray.placement.learner_rank, threads=tc.learner_threads)

    def _all(self, method: str, *args):
        """Call ``method`` on every rank; the answers in rank order. A rank that died raises its Ray actor error
        at once, even while the others wait for it in a collective (they would until torch.distributed's timeout)."""
        refs = [getattr(r, method).remote(*args) for r in self.ranks]
        pending = refs
        while len(pending) > 1:
            done, pending = self._ray.wait(pending, num_returns=1)
            self._ray.get(done)
        return self._ray.get(refs)

    def actor_step(self, batch: Batch) -> dict:
        return self._update("actor", batch)

    def critic_step(self, batch: Batch) -> dict:
        return self._update("critic", batch)

    def _update(self, model: str, batch: Batch) -> dict:
        """One ``actor_step``/``critic_step`` on every rank; its loss and tokens/s go to the metrics."""
        import time

        t0 = time.perf_counter()
        out = self._all(f"{model}_step", batch)[0]
        metrics.update(model, out, int(batch.attention_mask.sum()), time.perf_counter() - t0)
        return out

    def sft_step(self, batch: Batch) -> dict:
        return self._all("sft_step", batch)[0]

    def new_phase(self) -> None:
        """π_ref ← π on every rank (the next phase's KL constraint is against the policy now)."""
        self._all("new_phase")

    def publish(self, fleet=None) -> tuple[int, object, float]:
        """Publish the current policy to the fleet's engines by ``rollout.weight_sync``: one copy into the
        object store from rank 0 that every engine loads, or a bucketed broadcast from rank 0 over the
        fleet's weight channel (``RolloutFleet.weight_channel`` forms it) that also leaves a copy in the
        object store for late joiners. Returns (version, ObjectRef, seconds until all engines hold it)."""
        import time

        t0 = time.perf_counter()
        if fleet is not None and fleet.weight_channel(self.ranks[0]):
            version, ref, held_at = fleet.receive_broadcast([r.broadcast_weights.remote() for r in self.ranks])
            metrics.weight_sync("broadcast", held_at - t0, version)
            return version, ref, held_at - t0
        version, (ref,) = self._all("publish_weights")[0]
        if fleet is not None:
            fleet.publish(ref, version)
        metrics.weight_sync("object_store", time.perf_counter() - t0, version)
        return version, ref, time.perf_counter() - t0

    def save(self, folder: str, *, phase: int = 0, step: int = 0, tokenizer_dir: str | None = None,
             extra: dict | None = None) -> str:
        """A checkpoint (learner/checkpoint.py): every rank takes part (fsdp2 gathers), rank 0 writes;
        ``extra`` joins its manifest."""
        return self._all("save", folder, phase, step, tokenizer_dir, extra)[0]

    def load(self, folder: str) -> dict:
        """Restore every rank from a checkpoint (build the group on ``<folder>/policy`` first)."""
        return self._all("load", folder)[0]

    def policy_state(self) -> dict:
        """The policy's whole weights (gathered to rank 0 under fsdp2)."""
        return self._all("policy_state")[0]

    def critic_state(self) -> dict:
        return self._all("critic_state")[0]

    def peak_memory_gb(self) -> list[float]:
        """Each rank's peak memory in GB (CUDA allocations on GPUs, process RSS on CPUs)."""
        return self._all("peak_memory_gb")

    def local_policy_state(self, rank: int) -> dict:
        """What rank ``rank`` holds of the policy (its shards under fsdp2)."""
        return self._ray.get(self.ranks[rank].local_policy_state.remote())

    def shutdown(self) -> None:
        for r in self.ranks:
            self._ray.kill(r)
