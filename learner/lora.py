"""LoRA through peft: the policy trains low-rank adapters; what rollout engines load and checkpoints
hold is always the merged full model (vLLM serves it with no adapter support needed)."""

from __future__ import annotations

import copy

from torch import nn

from webrl.config import LoraConfig


def with_lora(policy: nn.Module, cfg: LoraConfig) -> nn.Module:
    """``policy`` with trainable adapters (only they require grad), or ``policy`` when LoRA is off."""
    if not cfg.enabled:
        return policy
    from peft import LoraConfig as PeftLoraConfig, get_peft_model

    return get_peft_model(policy, PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                                                 target_modules=cfg.target_modules, task_type="CAUSAL_LM"))


def is_lora(policy: nn.Module) -> bool:
    return hasattr(policy, "peft_config")


def merged(policy: nn.Module) -> nn.Module:
    """The plain Hugging Face model to publish or save: adapters merged into a copy (the policy keeps them)."""
    module = getattr(policy, "module", policy)  # unwrap DDP
    return copy.deepcopy(module).merge_and_unload() if is_lora(module) else module
