#!/usr/bin/env bash
# The Python environment of the training path and the benchmark peers, idempotent:
#   1. Debian's CPU PyTorch (python3-torch) with the OpenMP OpenBLAS (libopenblas0-openmp) as the
#      libblas.so.3 alternative. Without it PyTorch runs on the reference BLAS, about 30x slower. PyPI's
#      torch wheels pull several GB of CUDA libraries, so they are not used. Needs root for apt-get.
#   2. .venv (python3 -m venv --system-site-packages, so it sees Debian's torch and numpy) with the pinned
#      packages of python/requirements.txt from PyPI.
# Prints, last, the interpreter to use (.venv/bin/python).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=/usr/bin/python3
VENV=${RMBERT_VENV:-$ROOT/.venv}

if ! "$PY" -c 'import torch, numpy' 2>/dev/null || ! dpkg -s libopenblas0-openmp >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "scripts/setup-python.sh: needs root to apt-get install python3-torch python3-numpy python3-venv libopenblas0-openmp" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-torch python3-numpy python3-venv libopenblas0-openmp >/dev/null
fi

# The OpenMP OpenBLAS must be the selected libblas.so.3 / liblapack.so.3, not the reference BLAS.
for lib in libblas.so.3 liblapack.so.3; do
  target=$(update-alternatives --list "${lib}-x86_64-linux-gnu" 2>/dev/null | grep openblas-openmp | head -n1 || true)
  if [ -n "$target" ]; then update-alternatives --set "${lib}-x86_64-linux-gnu" "$target" >/dev/null; fi
done

stamp="$VENV/.requirements.sha256"
want=$(sha256sum "$ROOT/python/requirements.txt" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$PY" -m venv --system-site-packages "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/python/requirements.txt"
  echo "$want" > "$stamp"
fi
echo "$VENV/bin/python"
