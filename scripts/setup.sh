#!/usr/bin/env bash
# Create or refresh the virtual environment .venv and install phasetrans with its dev extras.
# Installs the pinned CPU wheel torch==2.13.0 first when no torch is importable, and pins the
# installed torch while installing the rest, so that no dependency can upgrade it (or pull CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 (CPU)"
    "$PY" -m pip install -q "torch==2.13.0"
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==${TORCH_VERSION}" > "$CONSTRAINTS"
LOG="$(mktemp)"
trap 'rm -f "$CONSTRAINTS" "$LOG"' EXIT
if ! "$PY" -m pip install -q -c "$CONSTRAINTS" -e '.[dev]' >"$LOG" 2>&1; then
    cat "$LOG"
    echo "setup: pip install failed" >&2
    exit 1
fi
"$PY" -c "import phasetrans, torch; print(f'setup: phasetrans {phasetrans.__version__}, torch {torch.__version__}')"
