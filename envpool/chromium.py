"""Which Chromium to run and how to find its process."""

from __future__ import annotations

import os
import shutil

import psutil

from webrl.config import BrowserConfig

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_executable(cfg: BrowserConfig) -> str | None:
    """``$WEBRL_CHROMIUM``, then ``browser.executable``, then a Chromium on PATH; ``None`` means
    Playwright's own download (``python -m playwright install chromium``)."""
    path = os.environ.get("WEBRL_CHROMIUM") or cfg.executable
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise FileNotFoundError(
                f"Chromium '{path}' (from $WEBRL_CHROMIUM or env.browser.executable) is not an executable file"
            )
        return path
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_pids(tag: str) -> list[int]:
    """Main Chromium processes launched with ``--webrl-pool=<tag>`` (renderers and helpers excluded)."""
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info["cmdline"] or []
        if f"--webrl-pool={tag}" in cmd and not any(a.startswith("--type=") for a in cmd):
            pids.append(p.info["pid"])
    return pids
