"""How a learner rank's modules are spread over the ranks (``learner.strategy``), and the few operations
the rest of the learner needs in order to stay blind to which strategy runs.

- ``ddp``: every rank holds whole modules; DistributedDataParallel all-reduces the gradients.
- ``fsdp2``: ``torch.distributed.fsdp.fully_shard`` on every decoder layer, then on the root: each
  parameter becomes a DTensor sharded along dim 0 over the ranks, all-gathered one layer at a time for
  the forward and backward passes, its gradient reduce-scattered. bf16 goes through FSDP2's
  ``MixedPrecisionPolicy`` (bf16 gathers and compute, fp32 gradient reduction, fp32 sharded weights
  and optimizer state). Works on CPUs with gloo (a CPU device mesh) as on GPUs with NCCL.

Both keep gradients local on all but the last micro-batch (``gradient_sync``). Full weights for
publishing and checkpoints are gathered to rank 0 only (``full_state_dict``). Optimizer state is kept
by parameter name with whole tensors (``optimizer_state``), so a checkpoint loads under either strategy
and any number of ranks.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module``'s parameters are FSDP2 shards (DTensors)."""
    return any(isinstance(p, DTensor) for p in module.parameters())


def decoder_layers(module: nn.Module) -> list[nn.Module]:
    """The transformer blocks under ``module`` (the ``layers`` list of each Hugging Face decoder): FSDP2's
    units, so that only one layer's full weights exist at a time."""
    return [block for name, blocks in module.named_modules()
            if isinstance(blocks, nn.ModuleList) and name.rsplit(".", 1)[-1] == "layers" for block in blocks]


@functools.cache
def _mesh(device_type: str):
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device_type, (world_size(),))


def fully_shard_layers(root: nn.Module, *, bf16: bool) -> nn.Module:
    """FSDP2 on each decoder layer, then on ``root`` (which then owns the rest: embeddings, final norm,
    LM head, critic heads). Gathers happen in ``root``'s forward: call the root, not a submodule."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    layers = decoder_layers(root)
    if not layers:
        raise ValueError(f"fsdp2 found no decoder layers to shard in {type(root).__name__} (it looks for a "
                         "Hugging Face decoder's `layers` list); use learner.strategy=ddp for this model")
    mesh = _mesh("cuda" if torch.cuda.is_available() else "cpu")  # CPU-built modules: shards move to the GPU
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    return fully_shard(root, mesh=mesh, mp_policy=mp)


def shards_from_cpu(strategy: str, world: int) -> bool:
    """Whether a rank builds its modules on the CPU and lets FSDP2 move only its shards to the GPU (fsdp2
    over more than one rank): the policy, its frozen reference and the critic never sit whole on one GPU
    (an 8B model's three fp32 copies are ~96 GB)."""
    return strategy == "fsdp2" and world > 1


def training_device(module: nn.Module, strategy: str) -> torch.device:
    """Where a rank's batches go: its GPU when FSDP2 moves CPU-built modules there, else the module's device."""
    if torch.cuda.is_available() and shards_from_cpu(strategy, world_size()):
        return torch.device("cuda")
    return next(module.parameters()).device


def distribute(module: nn.Module, strategy: str, *, trainable: bool = True, bf16: bool = False) -> nn.Module:
    """``module`` as this strategy runs it over the ranks (itself on one rank). A frozen module under
    ddp stays as it is: no gradients to synchronise."""
    if world_size() == 1:
        return module
    if strategy == "fsdp2":
        return fully_shard_layers(module, bf16=bf16)
    return nn.parallel.DistributedDataParallel(module) if trainable else module


def gradient_sync(module: nn.Module, sync: bool):
    """Context for one micro-batch's forward and backward: gradients are reduced over the ranks only
    when ``sync`` (the last micro-batch); before that they accumulate locally."""
    if isinstance(module, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext() if sync else module.no_sync()
    if is_fsdp(module):
        module.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def is_fsdp(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def release(module: nn.Module) -> None:
    """Free the gathered weights an FSDP2 root keeps after a forward with no backward (frozen modules)."""
    if is_fsdp(module):
        module.reshard()


def full_value(t: Tensor) -> Tensor:
    """A whole tensor from a DTensor (a collective: every rank calls it), the tensor itself otherwise."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def _aliases(module: nn.Module) -> dict[str, str]:
    """State names that are another name's tensor (tied weights), each mapped to the first name."""
    first, out = {}, {}
    for name, t in module.state_dict(keep_vars=True).items():
        if first.setdefault(id(t), name) != name:
            out[name] = first[id(t)]
    return out


def full_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """``module``'s whole tensors on the CPU, by name (tied names share one tensor, as in the module),
    on rank 0; other ranks get ``{}``. For sharded modules this is a collective every rank must call:
    each tensor is gathered in turn and offloaded at once."""
    aliases = _aliases(module)
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    elif rank() == 0:
        state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items() if k not in aliases}
    else:
        state = {}
    for alias, name in aliases.items():
        if name in state:
            state[alias] = state[name]
    return state


def load_full_state_dict(module: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy whole tensors into ``module`` (each rank keeps its own shard when sharded); names absent from
    ``state`` are left as they are."""
    if is_sharded(module):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        module.load_state_dict(state, strict=False)


@torch.no_grad()
def copy_parameters(source: nn.Module, target: nn.Module) -> None:
    """``target``'s parameters ← ``source``'s, by name (same architecture, same sharding: each rank
    copies its own shard, nothing crosses the network)."""
    into = dict(target.named_parameters())
    for name, p in source.named_parameters():
        into[name].copy_(p)


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's state keyed by parameter name with whole tensors on the CPU, on rank 0 (``{}``
    elsewhere; a collective for sharded parameters). It loads under any strategy and number of ranks."""
    keep = rank() == 0
    if not keep and not is_sharded(module):
        return {}
    names = {p: n for n, p in module.named_parameters()}
    state = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p in optimizer.state:
                whole = {k: full_value(v) if isinstance(v, Tensor) else v for k, v in optimizer.state[p].items()}
                state[names[p]] = {k: v.detach().to("cpu", copy=True) if isinstance(v, Tensor) else v
                                   for k, v in whole.items()}
    if not keep:
        return {}
    groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [names[p] for p in g["params"]]}
              for g in optimizer.param_groups]
    return {"state": state, "param_groups": groups}


def _like(value, param: Tensor):
    """A saved whole optimizer tensor laid out as ``param`` is (this rank's shard for a DTensor)."""
    if isinstance(param, DTensor) and isinstance(value, Tensor) and value.shape == param.shape:
        value = value.to(param.device)
        return distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
    return value


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Restore what :func:`optimizer_state` saved into an optimizer over ``module``'s parameters."""
    names = {p: n for n, p in module.named_parameters()}
    ours = [[names[p] for p in g["params"]] for g in optimizer.param_groups]
    theirs = [g["params"] for g in saved["param_groups"]]
    if ours != theirs:
        missing = sorted(set(sum(ours, [])) - set(sum(theirs, [])))[:3]
        raise ValueError(f"the saved optimizer state does not fit this model's trainable parameters (missing "
                         f"{missing}); was the checkpoint written for another model or another LoRA setting?")
    params = {n: p for p, n in names.items()}
    index = {n: i for i, n in enumerate(sum(ours, []))}
    state = {index[n]: {k: _like(v, params[n]) for k, v in s.items()} for n, s in saved["state"].items()}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in saved["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})
