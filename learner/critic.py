"""The WebRL critic: its own trunk (a copy of the policy's architecture with separate weights), two
small MLP heads of two logits each, read at the prompt's last token; V = min over heads of P(success)
(DESIGN.md §4)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from learner.losses import critic_value


class Critic(nn.Module):
    def __init__(self, trunk: nn.Module, hidden_size: int, heads: int = 2):
        super().__init__()
        self.trunk = trunk  # a Hugging Face base model (no LM head), e.g. AutoModel.from_pretrained(...)
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, 2)) for _ in range(heads)
        )

    @classmethod
    def from_causal_lm(cls, model, heads: int = 2) -> "Critic":
        """A critic whose trunk starts as a copy of ``model``'s decoder (its own weights from then on)."""
        import copy

        return cls(copy.deepcopy(model.get_decoder()), model.config.hidden_size, heads)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Head logits [batch, heads, 2], read at each sequence's last real token (right padding)."""
        hidden = self.trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        last = attention_mask.sum(-1) - 1
        read = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
        return torch.stack([head(read) for head in self.heads], dim=1)

    def value(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """V(s) in [0, 1]: the more pessimistic head's success probability."""
        return critic_value(self(input_ids, attention_mask))
