#!/usr/bin/env bash
# Installs the PyTorch peer used by benchmarks/engines.ts: Debian's CPU build of PyTorch 1.13 with an
# OpenMP OpenBLAS. Debian's python3-torch alone links the reference BLAS (about 30x slower on this kind of
# machine); libopenblas0-openmp registers itself as the libblas.so.3 alternative with a higher priority.
# PyPI's torch wheels for Linux x86_64 pull several GB of CUDA libraries, so they are not used here.
# Idempotent; needs root (apt-get). Prints the interpreter to use on its last line.
set -euo pipefail

PY=/usr/bin/python3
if "$PY" - <<'PY' 2>/dev/null
import torch, numpy  # noqa: F401
import sys
sys.exit(0)
PY
then
  have_torch=1
else
  have_torch=0
fi

if [ "$have_torch" = 0 ] || ! dpkg -s libopenblas0-openmp >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    echo "benchmarks/peer/setup.sh: needs root to apt-get install python3-torch libopenblas0-openmp" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-torch python3-numpy libopenblas0-openmp >/dev/null
fi

# Make sure the OpenMP OpenBLAS is the selected libblas.so.3 / liblapack.so.3 (not the reference BLAS).
for lib in libblas.so.3 liblapack.so.3; do
  target=$(update-alternatives --list "${lib}-x86_64-linux-gnu" 2>/dev/null | grep openblas-openmp | head -n1 || true)
  if [ -n "$target" ]; then update-alternatives --set "${lib}-x86_64-linux-gnu" "$target" >/dev/null; fi
done

"$PY" - <<'PY'
import torch
torch.matmul(torch.ones(64, 64), torch.ones(64, 64))  # loads the BLAS
blas = sorted({line.split()[-1] for line in open('/proc/self/maps') if 'blas' in line.lower()})
print(f"torch {torch.__version__}; BLAS loaded: {', '.join(blas) or 'none found'}", flush=True)
PY
echo "$PY"
