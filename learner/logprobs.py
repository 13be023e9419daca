"""Log-probs of the action tokens only.

The model's trunk runs over the whole sequence, but the vocabulary projection and its normaliser are
computed for the positions that predict action tokens and nothing else: never a [batch, length,
vocab] tensor (what makes naive log-prob code run out of memory on 16k-token prompts).
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_logprobs(model, input_ids: Tensor, attention_mask: Tensor, action_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token log-probs of the tokens where ``action_mask`` is 1, flattened, with the batch index
    of each. ``model`` is a Hugging Face causal LM; token ``p`` is predicted by the hidden state at
    ``p - 1``."""
    hidden = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    targets = action_mask[:, 1:].bool()
    rows, cols = targets.nonzero(as_tuple=True)
    logits = model.get_output_embeddings()(hidden[rows, cols]).float()  # [action tokens, vocab]
    chosen = logits.gather(-1, input_ids[rows, cols + 1].unsqueeze(-1)).squeeze(-1)
    return chosen - logits.logsumexp(-1), rows


def action_logprob_sums(model, input_ids: Tensor, attention_mask: Tensor, action_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Sum of each sample's action-token log-probs and the number of those tokens, each [batch]."""
    logp, rows = token_logprobs(model, input_ids, attention_mask, action_mask)
    batch = input_ids.shape[0]
    total = torch.zeros(batch, dtype=logp.dtype, device=logp.device).index_add(0, rows, logp)
    count = torch.zeros(batch, dtype=logp.dtype, device=logp.device).index_add(0, rows, torch.ones_like(logp))
    if (count == 0).any():
        raise ValueError(f"samples {(count == 0).nonzero().flatten().tolist()} have no action tokens")
    return total, count


def action_logprobs(model, input_ids: Tensor, attention_mask: Tensor, action_mask: Tensor) -> Tensor:
    """Mean log-prob of each sample's action tokens (WebRL's log π(a|s)), shape [batch]."""
    total, count = action_logprob_sums(model, input_ids, attention_mask, action_mask)
    return total / count
