"""Checkpoints: one folder per save, written whole or not at all (``<name>.partial`` renamed at the end).

    <folder>/policy/          a Hugging Face directory (safetensors, config, tokenizer): vLLM and
                              transformers load it as it is, e.g. ``webrl eval --model <folder>/policy``
    <folder>/reference.safetensors   the frozen reference policy (π of the previous phase)
    <folder>/critic.safetensors      the critic (trunk and heads)
    <folder>/optimizer.pt     both optimizers' state (AdamW moments and step counts)
    <folder>/manifest.json    version, phase, step, what each file is, the learner config, torch RNG

Only weights, optimizer state and counters are written: no config secrets, no environment.
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

MANIFEST = "manifest.json"


def _contiguous(state: dict) -> dict:
    # safetensors refuses tensors that share storage (tied embeddings): keep the first name of each
    seen, out = set(), {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t.detach().contiguous().cpu()
    return out


def save_checkpoint(folder: str | Path, learner: Learner, *, tokenizer=None, phase: int = 0, step: int = 0,
                    extra: dict | None = None) -> Path:
    """Write everything ``--resume`` needs to continue exactly where the learner is now."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    merged(learner.policy).save_pretrained(tmp / "policy", safe_serialization=True)
    if is_lora(learner.policy):  # the adapters too, so that training resumes on them
        learner.policy.save_pretrained(tmp / "adapter")
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp / "policy")
    save_file(_contiguous(learner.reference.state_dict()), tmp / "reference.safetensors")
    save_file(_contiguous(learner.critic.state_dict()), tmp / "critic.safetensors")
    torch.save({"actor": learner.actor_opt.state_dict(), "critic": learner.critic_opt.state_dict()}, tmp / "optimizer.pt")
    manifest = {
        "format": 1, "version": learner.version, "phase": phase, "step": step, "saved_at": time.time(),
        "files": {"policy": "policy/", "reference": "reference.safetensors", "critic": "critic.safetensors",
                  "optimizer": "optimizer.pt"},
        "learner_config": learner.cfg.model_dump(), **(extra or {}),
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    torch.save(torch.get_rng_state(), tmp / "rng.pt")
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a webrl checkpoint (no {MANIFEST}); "
                                "a checkpoint folder holds policy/, critic.safetensors, optimizer.pt and the manifest")
    return json.loads(path.read_text())


def _load(module: torch.nn.Module, path: Path) -> None:
    """Load a state dict saved by :func:`_contiguous`: names left out are only those tied to a saved one."""
    state = load_file(path)
    own = module.state_dict()
    ptrs = {own[k].untyped_storage().data_ptr() for k in state if k in own}
    unexpected = sorted(set(state) - set(own))
    missing = sorted(k for k in set(own) - set(state) if own[k].untyped_storage().data_ptr() not in ptrs)
    if missing or unexpected:
        raise ValueError(f"{path.name} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                         "(was the checkpoint written for another model?)")
    module.load_state_dict(state, strict=False)


def load_checkpoint(folder: str | Path, learner: Learner) -> dict:
    """Restore a learner built on ``<folder>/policy``: reference, critic, optimizer state, version, RNG.
    Returns the manifest (phase, step, ...)."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    _load(learner.reference, folder / "reference.safetensors")
    _load(learner.critic, folder / "critic.safetensors")
    opt = torch.load(folder / "optimizer.pt", weights_only=True)
    learner.actor_opt.load_state_dict(opt["actor"])
    learner.critic_opt.load_state_dict(opt["critic"])
    learner.version = manifest["version"]
    if (folder / "rng.pt").exists():
        torch.set_rng_state(torch.load(folder / "rng.pt", weights_only=True))
    return manifest
