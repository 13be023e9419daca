"""The grammar mask as a vLLM logits processor (see ``actors/constraint.py``): registered with every
vLLM engine, it masks the requests whose ``SamplingParams.extra_args`` carry an ActionGrammar under
:data:`~actors.constraint.GRAMMAR_KEY` (budget: their ``max_tokens``) and leaves the others alone. vLLM takes the raw log-probs it
reports before its logits processors run, so they stay those of the unconstrained model.

Imported only where vLLM is installed (the vLLM engine imports it)."""

from __future__ import annotations

from vllm import SamplingParams
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from actors.constraint import GRAMMAR_KEY, GrammarCache, RowMask, stop_token_ids


class ActionGrammarProcessor(AdapterLogitsProcessor):
    def __init__(self, vllm_config, device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        self._model_config = vllm_config.model_config
        self._grammars: GrammarCache | None = None  # built on the first constrained request (about 1 s)

    def is_argmax_invariant(self) -> bool:
        return False  # it changes which token greedy decoding picks

    def _cache(self) -> GrammarCache:
        if self._grammars is None:
            from transformers import AutoTokenizer

            mc = self._model_config
            tokenizer = AutoTokenizer.from_pretrained(mc.tokenizer)
            self._grammars = GrammarCache(tokenizer, mc.get_vocab_size(), stop_token_ids(mc.model, tokenizer))
        return self._grammars

    def new_req_logits_processor(self, params: SamplingParams) -> RowMask | None:
        grammar = (params.extra_args or {}).get(GRAMMAR_KEY)
        return self._cache().mask(grammar, params.max_tokens) if grammar else None
