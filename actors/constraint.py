"""Grammar-constrained decoding (``rollout.constrained``), the same mask in both engines.

A request whose :class:`~actors.engine.Sampling` carries a ``grammar``
(:func:`envpool.action_grammar.action_grammar`) only ever samples tokens with which the grammar's regex
can go on, the end-of-sequence token once the action is complete, and, inside free text, only tokens
that leave room to finish within the request's ``max_tokens`` (the budget rule of
``envpool/action_grammar.py``): every output is one valid action. :class:`RowMask` keeps one request's
xgrammar matcher and sets the logits of every other token to -inf before sampling. The transformers engine
runs it as a logits processor (:class:`HFGrammarMask`); the vLLM engine as a per-request vLLM logits
processor (``actors/vllm_grammar.py``).

Behaviour log-probs under the constraint: both engines report, for each sampled token, its log-prob
under the model's *unconstrained* softmax at temperature 1 (the raw logits, before the grammar mask,
temperature or top-p). That is what the learner computes for π and π_ref (``learner/logprobs.py``,
a softmax over the whole vocabulary), so the reported log-probs equal the learner's forward pass on
the same tokens, and the ratio π/π_ref and the KL term compare the same two distributions. The
grammar is treated like temperature: a way of sampling from the model, not part of the policy being
trained. Consequences, by design: (1) the behaviour distribution (the mask renormalised) is not π;
WebRL's losses never use an importance ratio against it, so nothing is biased by that; (2) a
constrained action's log π is lower than its renormalised log-prob by log Z, Z being the mass the
model gives to the grammar's tokens, so confidence-based filters (replay's exp(mean log π_ref), the
reference loss's confident β) see how much the model itself wants the action; (3) training raises
the probability of grammar-valid text, so the model learns the format and can later run without
the constraint.

Why not vLLM's structured outputs (``StructuredOutputsParams(regex=...)``, xgrammar backend): they
apply the mask to the logits before vLLM's sampler, so even ``logprobs_mode=raw_logprobs`` returns
the masked, renormalised log-probs (measured: tokens the grammar forces come back as 0.0, where the
model's own log-prob is about -11 for the tiny test model). A vLLM logits processor runs after the
raw log-probs are taken, which keeps them unconstrained. Both use the same xgrammar matcher.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch

from envpool.action_grammar import ActionGrammar

GRAMMAR_KEY = "webrl_grammar"  # vLLM SamplingParams.extra_args key of a request's ActionGrammar
_QUOTE, _BACKSLASH = ord('"'), ord("\\")


class GrammarViolation(RuntimeError):
    """A token the grammar refuses reached the matcher: the mask was not applied to that request."""


def scan_free_text(data: bytes, escaped: bool) -> tuple[bool, bool]:
    """Read ``data`` as the continuation of free text (after a backslash when ``escaped``): whether it
    closes the text (an unescaped quote), and if not, whether it ends halfway through an escape."""
    for b in data:
        if escaped:
            escaped = False
        elif b == _BACKSLASH:
            escaped = True
        elif b == _QUOTE:
            return True, False
    return False, escaped


class BudgetTables:
    """For every token, starting in free text plainly (row 0) or after a backslash (row 1): ``closes``
    (it contains the closing quote) and ``pending`` (it does not, and ends halfway through an escape)."""

    def __init__(self, token_bytes: list[bytes], vocab_size: int):
        pad = [(False, True)] * (vocab_size - len(token_bytes))  # ids past the tokenizer: never in a mask anyway
        rows = [[scan_free_text(data, escaped) for data in token_bytes] + pad for escaped in (False, True)]
        self.closes = torch.tensor([[c for c, _ in row] for row in rows], dtype=torch.bool)
        self.pending = torch.tensor([[p for _, p in row] for row in rows], dtype=torch.bool)
        # what to block when few tokens are left: non-closing tokens that end in an escape, or all of them
        self._block = {"tight": ~self.closes & self.pending, "forced": ~self.closes}
        self._on: dict = {}

    def block(self, which: str, escaped: bool, device) -> torch.Tensor:
        key = (which, escaped, str(device))
        if key not in self._on:
            self._on[key] = self._block[which][int(escaped)].to(device)
        return self._on[key]


class GrammarCache:
    """xgrammar's view of one tokenizer, the regexes compiled against it (each once), and the tables of
    the token-budget rule."""

    def __init__(self, tokenizer, vocab_size: int, stop_token_ids: Iterable[int]):
        import xgrammar as xgr

        self.vocab_size = vocab_size
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=sorted(set(stop_token_ids)))
        self._compiler = xgr.GrammarCompiler(info)
        self.compiled = lru_cache(maxsize=1024)(self._compiler.compile_regex)
        self.token_bytes = list(info.decoded_vocab)
        self.tables = BudgetTables(self.token_bytes, vocab_size)

    def mask(self, grammar: ActionGrammar, max_tokens: int) -> "RowMask":
        """A fresh mask for one request under ``grammar`` with a budget of ``max_tokens`` tokens."""
        return RowMask(self, grammar, max_tokens)


class RowMask:
    """One request's grammar state. Called with the tokens it has generated so far and the logits of
    its next token (1-D), it advances over the new tokens and masks the logits in place: tokens the
    grammar cannot continue with, and inside free text those that would leave no room to finish
    within ``max_tokens`` (the rule is in ``envpool/action_grammar.py``)."""

    def __init__(self, cache: GrammarCache, grammar: ActionGrammar, max_tokens: int):
        import xgrammar as xgr

        self._xgr, self.cache, self.max_tokens = xgr, cache, max_tokens
        self.matcher = xgr.GrammarMatcher(cache.compiled(grammar.regex))
        self.bitmask = xgr.allocate_token_bitmask(1, cache.vocab_size)
        self.openers = [(opener.encode(), close) for opener, close in grammar.free_text]
        self.consumed = 0
        self.text = bytearray()  # the output so far
        self.quoted = False  # inside a quoted value
        self.close: int | None = None  # inside free text: the most bytes from its closing quote to the end
        self.escaped = False  # inside free text, just after a backslash

    def _read(self, data: bytes) -> None:
        for b in data:
            if self.close is not None and self.escaped:
                self.escaped = False
            elif self.close is not None and b == _BACKSLASH:
                self.escaped = True
            elif b == _QUOTE:
                self.quoted = not self.quoted
                self.close = next((c for o, c in self.openers if (self.text + b'"').endswith(o)), None) \
                    if self.quoted else None
            self.text.append(b)

    def __call__(self, output_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        # after the end-of-sequence token a batch pads the finished row: nothing more to read
        while self.consumed < len(output_ids) and not self.matcher.is_terminated():
            token = int(output_ids[self.consumed])
            if not self.matcher.accept_token(token):
                raise GrammarViolation(f"token {token} does not continue the grammar")
            self._read(self.cache.token_bytes[token])
            self.consumed += 1
        if self.matcher.is_terminated():
            return logits
        self.matcher.fill_next_token_bitmask(self.bitmask)
        self._xgr.apply_token_bitmask_inplace(logits.view(1, -1), self.bitmask.to(logits.device))
        if self.close is not None:
            left = self.max_tokens - len(output_ids) - 1  # tokens left after this one
            if left < self.close + 2:  # not every token that keeps the text open leaves room to finish
                which = "tight" if left == self.close + 1 else "forced"
                logits.masked_fill_(self.cache.tables.block(which, self.escaped, logits.device), float("-inf"))
        return logits


class HFGrammarMask:
    """A transformers logits processor: row ``i`` of a left-padded batch (prompts ``width`` tokens wide)
    is masked by ``masks[i]``, or left alone where that is None."""

    def __init__(self, masks: list[RowMask | None], width: int):
        self.masks, self.width = masks, width

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = scores.clone()  # generate keeps the tensor it passes in as the raw logits (the log-probs)
        for i, mask in enumerate(self.masks):
            if mask is not None:
                mask(input_ids[i, self.width:].tolist(), scores[i])
        return scores


def stop_token_ids(model_path, tokenizer) -> set[int]:
    """The tokens that end a generation: the generation config's end-of-sequence ids and the tokenizer's."""
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json
        eos = None
    ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
