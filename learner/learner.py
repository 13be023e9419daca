"""One learner rank: the policy, its frozen reference (the previous phase's policy) and the critic,
trained by WebRL's losses with gradient accumulation to the global batch. With ``world_size > 1`` the
modules run under ``learner.strategy`` (learner/parallel.py: DDP, or FSDP2 sharding; gloo on CPU, NCCL
on GPU) and every loss is normalised by the global count of samples that count, so N ranks take exactly
the step one rank would take on the whole batch.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist
from torch import Tensor, nn

from learner.critic import Critic
from learner.logprobs import action_logprob_sums, action_logprobs
from learner.lora import merged, with_lora
from learner.losses import paper_actor_terms, reference_actor_terms
from learner.parallel import (copy_parameters, distribute, full_state_dict, full_value, gradient_sync, release,
                              training_device)
from webrl.config import LearnerConfig
from webrl.hardware import cpu_has_bf16


def autocast_dtype(precision: str):
    """bf16 for forward passes where the hardware computes it natively (``precision`` auto), else None."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_available() or cpu_has_bf16() else None


class NonFiniteLoss(RuntimeError):
    """A loss came out NaN or infinite; the step was not taken."""


@dataclass
class Batch:
    """Right-padded token batches; ``action_mask`` marks the action tokens, ``advantage`` and
    ``outcome`` are per sample (what a step needs; the other may be empty)."""

    input_ids: Tensor
    attention_mask: Tensor
    action_mask: Tensor | None = None
    advantage: Tensor | None = None
    outcome: Tensor | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def _select(self, index: slice | Tensor) -> "Batch":
        return Batch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[index])
                        for f in fields(self)})

    def shard(self, rank: int, world: int) -> "Batch":
        if len(self) % world:
            raise ValueError(f"a batch of {len(self)} samples does not split over {world} ranks; "
                             "make learner.batch_size a multiple of the number of ranks")
        size = len(self) // world
        return self._select(slice(rank * size, (rank + 1) * size))

    def micro(self, size: int) -> list["Batch"]:
        """Consecutive micro-batches of ``size`` rows, each cut to its own longest row."""
        return [self._select(slice(i, i + size))._trimmed() for i in range(0, len(self), size)]

    def _trimmed(self) -> "Batch":
        """Without the columns that are padding in every row (right padding: the forward pass is the same)."""
        width = int(self.attention_mask.sum(1).max()) if len(self) else 0
        return Batch(self.input_ids[:, :width], self.attention_mask[:, :width],
                     None if self.action_mask is None else self.action_mask[:, :width], self.advantage, self.outcome)

    def by_length(self) -> tuple["Batch", Tensor]:
        """The rows sorted by length (stable) and the order taken, ``sorted[i] = self[order[i]]``: micro-batches
        of similar lengths carry little padding. Sums over rows do not depend on the order; per-row results
        go back with ``out[order] = results``."""
        order = torch.argsort(self.attention_mask.sum(1), stable=True)
        return self._select(order), order

    def to(self, device: torch.device) -> "Batch":
        return Batch(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                        for f in fields(self)})


class _ActionLogProb(nn.Module):
    """Makes the action log-prob computation a module's forward, so that DDP synchronises its gradients
    and FSDP2 gathers the weights it reads (the decoder and the LM head are called directly)."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy

    def forward(self, input_ids, attention_mask, action_mask, mean: bool = True):
        if mean:
            return action_logprobs(self.policy, input_ids, attention_mask, action_mask)
        return action_logprob_sums(self.policy, input_ids, attention_mask, action_mask)[0]


class Learner:
    def __init__(self, policy: nn.Module, cfg: LearnerConfig, *, micro_batch: int = 4, critic: Critic | None = None):
        self.cfg, self.micro_batch = cfg, micro_batch
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.device = training_device(policy, cfg.strategy)
        self.reference = self._frozen_copy(policy)
        self.critic = (critic or Critic.from_causal_lm(policy)).train()
        if cfg.gradient_checkpointing:  # recompute each layer's activations in the backward pass
            for model in (policy, self.critic.trunk):
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.policy = with_lora(policy, cfg.lora).train()
        self.autocast_dtype = autocast_dtype(cfg.precision)
        # FSDP2 shards these in place: self.policy, self.reference and self.critic then hold DTensor shards
        bf16 = self.autocast_dtype == torch.bfloat16
        self.actor = distribute(_ActionLogProb(self.policy), cfg.strategy, bf16=bf16)
        self.reference_logp = distribute(_ActionLogProb(self.reference), cfg.strategy, trainable=False, bf16=bf16)
        self.critic_module = distribute(self.critic, cfg.strategy, bf16=bf16)
        self._optimizer = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.SGD
        self.actor_opt = self._optimizer(self._trainable(), lr=cfg.lr)
        self.critic_opt = self._optimizer(self.critic.parameters(), lr=cfg.lr)
        self._sft_opt = None  # made on the first supervised step (or a resume), with learner.sft_lr
        self.version = 0  # bumped by every actor update; rollout engines load weights by it

    @staticmethod
    def _frozen_copy(policy: nn.Module) -> nn.Module:
        return copy.deepcopy(merged(policy)).eval().requires_grad_(False)

    def _trainable(self) -> list[nn.Parameter]:
        return [p for p in self.policy.parameters() if p.requires_grad]

    @property
    def sft_opt(self) -> torch.optim.Optimizer:
        """The supervised warm start's optimizer (``learner.sft_lr``), made when first needed."""
        if self._sft_opt is None:
            self._sft_opt = self._optimizer(self._trainable(), lr=self.cfg.sft_lr)
        return self._sft_opt

    def optimizers(self) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
        """Each optimizer made so far by name, with the module whose parameters it steps."""
        out = {"actor": (self.policy, self.actor_opt), "critic": (self.critic, self.critic_opt)}
        if self._sft_opt is not None:
            out["sft"] = (self.policy, self._sft_opt)
        return out

    def _autocast(self):
        # also under FSDP2's bf16 MixedPrecisionPolicy: it keeps the fp32 islands (read-outs, logits) working
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def new_phase(self) -> None:
        """π_ref ← π: each phase's KL constraint is against the policy the previous phase ended with
        (adapters merged: the reference is a plain frozen model; sharded, each rank copies its shard)."""
        copy_parameters(merged(self.policy), self.reference)

    def full_policy_state(self) -> dict[str, Tensor]:
        """The policy's whole weights by Hugging Face name (adapters merged), on the CPU of rank 0 only
        (``{}`` elsewhere): what rollout engines load and checkpoints hold. A collective under fsdp2."""
        return full_state_dict(merged(self.policy))

    def _global_sum(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.item()

    def _step(self, batch: Batch, module: nn.Module, optimizer, params, count_of, loss_sum_of, what: str) -> dict:
        """Accumulate ``loss_sum_of(mb) / global count_of`` over micro-batches, then clip and step once.
        A non-finite loss on any rank skips the step on every rank; the ranks still run every micro-batch,
        so that their collectives stay in step (and FSDP2's accumulated gradients are flushed, then dropped)."""
        if len(batch) == 0:
            raise ValueError(f"empty batch: no {what} update to make")
        micro = batch.to(self.device).by_length()[0].micro(self.micro_batch)  # loss sums: order-free
        counted = self._global_sum(float(sum(count_of(mb) for mb in micro)))
        if counted == 0:
            return {"skipped": f"no sample in the batch counts for the {what} loss", "version": self.version}
        total, bad = 0.0, None
        for i, mb in enumerate(micro):
            with gradient_sync(module, sync=i == len(micro) - 1), self._autocast():
                loss = loss_sum_of(mb).float() * (self.world / counted)  # DDP and FSDP2 average over ranks: undo it
                if not torch.isfinite(loss):
                    bad = bad or f"the {what} loss is {loss.item()} on micro-batch {i}"
                    loss = loss.nan_to_num(0.0, 0.0, 0.0) * 0.0  # a backward all the same: the ranks stay in step
                loss.backward()
                total += loss.item() / self.world
        if self._global_sum(float(bad is not None)):
            optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLoss(f"{bad or f'a {what} loss on another rank is not finite'}; the update was skipped "
                                "(check the batch for empty actions or extreme log-probs)")
        grad_norm = nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return {f"{what}_loss": self._global_sum(total), "grad_norm": float(full_value(grad_norm)), "samples": counted}

    def _policy_step(self, batch: Batch, optimizer, count_of, loss_sum_of, what: str) -> dict:
        """A step on the policy's trainable parameters; a step taken is a new weights version."""
        out = self._step(batch, self.actor, optimizer, self._trainable(), count_of, loss_sum_of, what)
        if "skipped" not in out:
            self.version += 1
            out["version"] = self.version
        return out

    def actor_step(self, batch: Batch) -> dict:
        """One KL-constrained actor update (``learner.actor_loss``: paper Eq. 6 or the reference code's)."""

        def count_of(mb: Batch) -> int:
            return int((mb.advantage > 0).sum()) if self.cfg.actor_loss == "reference" else len(mb)

        def loss_sum_of(mb: Batch):
            logp = self.actor(mb.input_ids, mb.attention_mask, mb.action_mask)
            with torch.no_grad():
                ref = self.reference_logp(mb.input_ids, mb.attention_mask, mb.action_mask)
            release(self.reference_logp)
            if self.cfg.actor_loss == "paper":
                return paper_actor_terms(logp, ref, mb.advantage, self.cfg.beta).sum()
            terms, keep = reference_actor_terms(logp, ref, mb.advantage, confident_beta=self.cfg.reference_confident_beta,
                                                confident_p=self.cfg.reference_confident_p)
            return terms[keep].sum()

        return self._policy_step(batch, self.actor_opt, count_of, loss_sum_of, "actor")

    def sft_step(self, batch: Batch) -> dict:
        """One supervised step (the warm start before WebRL): mean negative log-likelihood of every
        action token in the global batch, with its own optimizer at ``learner.sft_lr``."""
        def count_of(mb: Batch) -> int:
            return int(mb.action_mask[:, 1:].sum())

        def loss_sum_of(mb: Batch):
            return -self.actor(mb.input_ids, mb.attention_mask, mb.action_mask, mean=False).sum()

        return self._policy_step(batch, self.sft_opt, count_of, loss_sum_of, "sft")

    def critic_step(self, batch: Batch) -> dict:
        """One critic update: cross-entropy of both heads against each sample's trajectory outcome."""

        def loss_sum_of(mb: Batch):
            logits = self.critic_module(mb.input_ids, mb.attention_mask)  # [n, heads, 2]
            target = mb.outcome.long().unsqueeze(1).expand(-1, logits.shape[1])
            return nn.functional.cross_entropy(logits.transpose(1, 2), target, reduction="none").mean(1).sum()

        return self._step(batch, self.critic_module, self.critic_opt, list(self.critic.parameters()), len, loss_sum_of,
                          "critic")
