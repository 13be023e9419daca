"""LearnerGroup: N learner ranks as Ray actors joined by torch.distributed (gloo on CPU, NCCL on GPU).

Each rank builds the same policy (a model directory, or a config dict for a tiny test model, under the
same seed), takes its shard of every batch, and DDP keeps the ranks identical. The actor classes are
thin shells over :class:`learner.learner.Learner`.
"""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist

from learner.learner import Batch, Learner
from webrl.config import LearnerConfig


def build_policy(spec: str | dict, seed: int = 0):
    """A causal LM from a Hugging Face directory, or a randomly initialised Llama from a config dict."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if isinstance(spec, dict):
        return LlamaForCausalLM(LlamaConfig(**spec))
    return AutoModelForCausalLM.from_pretrained(spec)


class LearnerRank:
    def __init__(self, rank: int, world: int, address: str, policy: str | dict, cfg: LearnerConfig,
                 micro_batch: int, seed: int):
        self.rank, self.world = rank, world
        if world > 1:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, init_method=f"tcp://{address}", rank=rank, world_size=world)
        torch.manual_seed(seed)
        self.learner = Learner(build_policy(policy, seed), cfg, micro_batch=micro_batch)

    def actor_step(self, batch: Batch) -> dict:
        return self.learner.actor_step(batch.shard(self.rank, self.world))

    def critic_step(self, batch: Batch) -> dict:
        return self.learner.critic_step(batch.shard(self.rank, self.world))

    def policy_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.learner.policy.state_dict().items()}

    def critic_state(self) -> dict:
        return {k: v.detach().clone() for k, v in self.learner.critic.state_dict().items()}


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LearnerGroup:
    """Drives N :class:`LearnerRank` actors in lock step; results come from rank 0."""

    def __init__(self, ranks: int, policy: str | dict, cfg: LearnerConfig, *, micro_batch: int = 4, seed: int = 0,
                 num_cpus_per_rank: float = 1, num_gpus_per_rank: float = 0, host: str = "127.0.0.1"):
        import ray

        self._ray = ray
        address = f"{host}:{_free_port(host)}"
        actor = ray.remote(num_cpus=num_cpus_per_rank, num_gpus=num_gpus_per_rank)(LearnerRank)
        self.ranks = [actor.remote(r, ranks, address, policy, cfg, micro_batch, seed) for r in range(ranks)]

    def _all(self, method: str, *args):
        return self._ray.get([getattr(r, method).remote(*args) for r in self.ranks])

    def actor_step(self, batch: Batch) -> dict:
        return self._all("actor_step", batch)[0]

    def critic_step(self, batch: Batch) -> dict:
        return self._all("critic_step", batch)[0]

    def policy_state(self, rank: int = 0) -> dict:
        return self._ray.get(self.ranks[rank].policy_state.remote())

    def critic_state(self, rank: int = 0) -> dict:
        return self._ray.get(self.ranks[rank].critic_state.remote())

    def shutdown(self) -> None:
        for r in self.ranks:
            self._ray.kill(r)
