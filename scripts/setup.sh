#!/usr/bin/env bash
# Create or refresh the virtual environment .venv and install phasetrans with its dev extras.
# Installs torch==2.13.0 first when no torch is importable, and pins the installed torch while
# installing the rest, so that no dependency can upgrade it (or pull CUDA). Which torch wheel that
# is depends on pip's configuration: the CPU-only wheel where the configured index or find-links
# serve it, or with TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu; PyPI's default Linux
# wheel is the CUDA build (it runs on CPU too, but downloads the CUDA libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        echo "setup: installing torch==2.13.0 from $TORCH_INDEX_URL"
        "$PY" -m pip install -q --index-url "$TORCH_INDEX_URL" "torch==2.13.0"
    else
        echo "setup: installing torch==2.13.0 (the wheel pip's configuration selects)"
        "$PY" -m pip install -q "torch==2.13.0"
    fi
fi
# the version from the package metadata: importing torch before numpy is installed prints
# "UserWarning: Failed to initialize NumPy" (torch probes numpy at import; numpy comes next)
TORCH_VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0])')"
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
