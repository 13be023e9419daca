"""The transformers engine: the fallback where vLLM cannot run, and the reference vLLM is tested
against. Requests waiting together form one left-padded batch per sampling setting; requests with
a grammar (``Sampling.grammar``) are masked by it, row by row, in the same batch as those without.
The log-probs come from the raw logits: the unconstrained model at temperature 1."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Mapping

from actors.constraint import GrammarCache, HFGrammarMask
from actors.engine import Engine, Generation, _Request, resolve_dtype


class HFEngine(Engine):
    name = "transformers"

    def __init__(self, model_path: Path, tokenizer, cfg, max_model_len: int, seed: int = 0):
        super().__init__(tokenizer, max_model_len)
        import torch
        from transformers import AutoModelForCausalLM

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, resolve_dtype(cfg.dtype))).to(self.device).eval()
        torch.manual_seed(seed)
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos)
        self._pending: list[_Request] = []
        self._grammars: GrammarCache | None = None
        self._start()

    def _admit(self, reqs: list[_Request]) -> None:
        self._pending.extend(reqs)

    def _advance(self) -> list[tuple[str, Generation]]:
        groups: dict[tuple, list[_Request]] = defaultdict(list)
        for r in self._pending:
            groups[(r.sampling.temperature, r.sampling.top_p, r.sampling.max_tokens)].append(r)
        self._pending = []
        finished = []
        for (temperature, top_p, max_tokens), reqs in groups.items():
            finished.extend(self._batch(reqs, temperature, top_p, max_tokens))
        return finished

    def _batch(self, reqs: list[_Request], temperature: float, top_p: float, max_tokens: int):
        torch = self.torch
        width = max(len(r.prompt) for r in reqs)
        ids = torch.full((len(reqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(reqs):
            ids[i, width - len(r.prompt):] = torch.tensor(r.prompt)
            mask[i, width - len(r.prompt):] = 1
        sample = temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device), max_new_tokens=max_tokens,
                do_sample=sample, temperature=1.0 if sample else None, top_p=1.0 if sample else None,
                logits_processor=self._processors(reqs, width, temperature, top_p),
                top_k=None, pad_token_id=self.pad, eos_token_id=sorted(self.eos),
                output_logits=True, return_dict_in_generate=True,
            )
        new = out.sequences[:, width:].cpu()
        logprobs = torch.stack(out.logits, dim=1).float().log_softmax(-1).cpu()  # raw logits: temperature 1
        picked = logprobs.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        results = []
        for i, r in enumerate(reqs):
            tokens = new[i].tolist()
            end = next((k + 1 for k, t in enumerate(tokens) if t in self.eos), None)
            reason = "stop" if end is not None else "length"
            end = end or len(tokens)
            results.append((r.id, self._generation(r, tokens[:end], picked[i, :end].tolist(), reason)))
        return results

    def _processors(self, reqs: list[_Request], width: int, temperature: float, top_p: float):
        """The grammar mask of the requests that have one, then temperature and top-p: in this order, so
        that top-p keeps a share of the tokens the grammar allows (generate would put ours last)."""
        from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

        out = LogitsProcessorList()
        if any(r.sampling.grammar for r in reqs):
            grammars = self._grammar_cache()
            out.append(HFGrammarMask([grammars.mask(r.sampling.grammar, r.sampling.max_tokens) if r.sampling.grammar
                                      else None for r in reqs], width))
        if temperature > 0 and temperature != 1.0:
            out.append(TemperatureLogitsWarper(temperature))
        if temperature > 0 and top_p < 1.0:
            out.append(TopPLogitsWarper(top_p))
        return out

    def _grammar_cache(self) -> GrammarCache:
        if self._grammars is None:  # built on the first constrained request (about 1 s)
            vocab = self.model.get_output_embeddings().weight.shape[0]
            self._grammars = GrammarCache(self.tokenizer, vocab, self.eos)
        return self._grammars

    def _apply_weights(self, weights: Mapping) -> None:
        expected = set(self.model.state_dict())
        tied = {"lm_head.weight"} if self.model.config.tie_word_embeddings else set()
        missing, unexpected = expected - set(weights) - tied, set(weights) - expected
        if missing or unexpected:  # checked before anything is copied: a bad update leaves the model whole
            raise ValueError(f"the weights do not fit this model: missing {sorted(missing)[:5]}, "
                             f"unexpected {sorted(unexpected)[:5]}")
        state = self.model.state_dict()
        with self.torch.no_grad():
            for name, tensor in weights.items():  # one tensor at a time: broadcast buckets arrive as they are read
                if state[name].shape != tensor.shape:
                    raise ValueError(f"{name} has shape {tuple(tensor.shape)}, this model's {tuple(state[name].shape)}")
                state[name].copy_(tensor)
