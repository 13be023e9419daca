"""Checkpoints: one folder per save, written whole or not at all (``<name>.partial`` renamed at the end).

    <folder>/policy/          a Hugging Face directory (safetensors, config, tokenizer): vLLM and
                              transformers load it as it is, e.g. ``webrl eval --model <folder>/policy``
    <folder>/adapter/         LoRA only: the adapters (peft), read back on resume
    <folder>/reference.safetensors   the frozen reference policy (π of the previous phase)
    <folder>/critic.safetensors      the critic (trunk and heads)
    <folder>/optimizer.pt     every optimizer's state (AdamW moments and step counts) by parameter name
    <folder>/manifest.json    version, phase, step, what each file is, the learner config
    <folder>/rng.pt           torch's RNG state

Only weights, optimizer state and counters are written: no config secrets, no environment. With
sharded (FSDP2) ranks, saving and loading are collectives: every rank calls them; the whole weights
are gathered to rank 0, which alone writes. Optimizer state is stored by parameter name with whole
tensors, so a checkpoint resumes under ddp or fsdp2 and on any number of ranks.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from learner.learner import Learner
from learner.lora import is_lora, merged
from learner.parallel import full_state_dict, load_full_state_dict, load_optimizer_state, optimizer_state, rank

MANIFEST = "manifest.json"
FORMAT = 2  # 1: optimizer state by parameter index (one optimizer layout only)


def _contiguous(state: dict) -> dict:
    # safetensors refuses tensors that share storage (tied embeddings): keep the first name of each
    seen, out = set(), {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t.detach().contiguous().cpu()
    return out


def _replace(tmp: Path, folder: Path) -> None:
    """``tmp`` becomes ``folder``; an older ``folder`` is moved aside first, so that some whole checkpoint
    exists at every moment."""
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(folder: str | Path, learner: Learner, *, tokenizer=None, phase: int = 0, step: int = 0,
                    extra: dict | None = None) -> Path | None:
    """Write everything ``--resume`` needs to continue exactly where the learner is now. Every rank calls
    it (under fsdp2 the weights are gathered); rank 0 writes and returns the folder, the others None."""
    plain = merged(learner.policy)  # LoRA: adapters merged into a copy
    policy = full_state_dict(plain)
    reference = full_state_dict(learner.reference)
    critic = full_state_dict(learner.critic)
    optimizers = {name: optimizer_state(module, opt) for name, (module, opt) in learner.optimizers().items()}
    if rank() != 0:
        return None
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = {"policy": "policy/", "reference": "reference.safetensors", "critic": "critic.safetensors",
             "optimizer": "optimizer.pt"}
    plain.save_pretrained(tmp / "policy", state_dict=policy, safe_serialization=True)
    if is_lora(learner.policy):  # the adapters too, so that training resumes on them
        learner.policy.save_pretrained(tmp / "adapter")
        files["adapter"] = "adapter/"
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "policy")
    save_file(_contiguous(reference), tmp / "reference.safetensors")
    save_file(_contiguous(critic), tmp / "critic.safetensors")
    torch.save(optimizers, tmp / "optimizer.pt")
    manifest = {
        "format": FORMAT, "version": learner.version, "phase": phase, "step": step, "saved_at": time.time(),
        "files": files, "learner_config": learner.cfg.model_dump(), **(extra or {}),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    torch.save(torch.get_rng_state(), tmp / "rng.pt")
    _replace(tmp, folder)
    return folder


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a webrl checkpoint (no {MANIFEST}); "
                                "a checkpoint folder holds policy/, critic.safetensors, optimizer.pt and the manifest")
    return json.loads(path.read_text())


def _load(module: torch.nn.Module, path: Path) -> None:
    """Load a state dict saved by :func:`_contiguous` (a file, or a folder of safetensors files): names
    left out are only those tied to a saved one."""
    state = _safetensors(path)
    own = module.state_dict(keep_vars=True)
    saved = {id(own[k]) for k in state if k in own}  # tied names share one parameter object
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if id(own[k]) not in saved)
    if missing or unexpected:
        raise ValueError(f"{path.name} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                         "(was the checkpoint written for another model?)")
    load_full_state_dict(module, state)


def _safetensors(path: Path) -> dict:
    """The tensors of one safetensors file, or of every one in a folder (a Hugging Face directory's shards)."""
    state = {}
    for file in sorted(path.glob("*.safetensors")) if path.is_dir() else [path]:
        state |= load_file(file)
    return state


def _load_adapter(folder: Path, learner: Learner) -> None:
    """LoRA: the adapters from ``adapter/`` into a learner built on the same base model; checked by
    merging and comparing with the saved ``policy/`` (a learner built on another base, e.g. on the
    merged ``policy/`` itself, would apply the adapters twice)."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(learner.policy, load_file(folder / "adapter" / "adapter_model.safetensors"))
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"{folder / 'adapter'} does not fit this model's adapters: unexpected "
                         f"{result.unexpected_keys[:3]} (another learner.lora rank or target_modules?)")
    saved, ours = _safetensors(folder / "policy"), merged(learner.policy).state_dict()
    off = [k for k, v in saved.items()
           if k in ours and not torch.allclose(ours[k].float(), v.float(), rtol=1e-5, atol=1e-6)]
    if off:
        raise ValueError(f"the adapters in {folder / 'adapter'} merged into this learner's base model do not give the "
                         f"checkpoint's policy ({len(off)} tensors differ, e.g. {off[0]}): build the learner on the base "
                         f"model the adapters were trained on (not on {folder / 'policy'}, which has them merged in)")


def load_checkpoint(folder: str | Path, learner: Learner) -> dict:
    """Restore a learner of the checkpoint's architecture to where the checkpoint left it: policy,
    reference, critic, every optimizer's state, version, RNG. With LoRA the learner must be built on the
    base model the adapters were trained on; the adapters come from ``<folder>/adapter``. Every rank
    calls it (the same files; each keeps its shard). Returns the manifest (phase, step, ...)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    has_adapter = (folder / "adapter").is_dir()
    if has_adapter != is_lora(learner.policy):
        raise ValueError(f"{folder} was written {'with' if has_adapter else 'without'} LoRA adapters but this learner "
                         f"has learner.lora.enabled={is_lora(learner.policy)}: set it as the checkpoint's run did")
    if has_adapter:
        _load_adapter(folder, learner)
    else:
        _load(learner.policy, folder / "policy")
    _load(learner.reference, folder / "reference.safetensors")
    _load(learner.critic, folder / "critic.safetensors")
    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    if manifest.get("format", 1) == 1:  # by parameter index, actor and critic only
        learner.actor_opt.load_state_dict(saved["actor"])
        learner.critic_opt.load_state_dict(saved["critic"])
    else:
        if "sft" in saved:
            learner.sft_opt  # noqa: B018  (made now, so that its state has somewhere to go)
        for name, (module, optimizer) in learner.optimizers().items():
            if name in saved:
                load_optimizer_state(module, optimizer, saved[name])
    learner.version = manifest["version"]
    if (folder / "rng.pt").exists():
        torch.set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return manifest
