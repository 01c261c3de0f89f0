#!/usr/bin/env bash
# Installs the PyTorch peer used by benchmarks/engines.ts: Debian's CPU build of PyTorch 1.13 with an
# OpenMP OpenBLAS. Debian's python3-torch alone links the reference BLAS (about 30x slower on this kind of
# machine); libopenblas0-openmp registers itself as the libblas.so.3 alternative with a higher priority.
# PyPI's torch wheels for Linux x86_64 pull several GB of CUDA libraries, so they are not used here.
# Idempotent; needs root (apt-get). Prints a description, the OPENBLAS_CORETYPE to run with (empty: OpenBLAS's
# own choice) and, on its last line, the interpreter to use.
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

# OpenBLAS picks its kernels from the CPU model at load time. A release older than the CPU falls back to
# generic SSE3 kernels ("Prescott"), 4-5x slower (Debian's 0.3.21 does this on Sapphire Rapids Xeons):
# then name the newest kernel set the CPU's flags support, as a user tuning OpenBLAS would.
describe() {
  "$PY" - <<'PY'
import ctypes, torch
torch.matmul(torch.ones(64, 64), torch.ones(64, 64))  # loads the BLAS
blas = sorted({line.split()[-1] for line in open('/proc/self/maps') if 'blas' in line.lower()})
core = 'unknown'
for lib in blas:
    try:
        fn = ctypes.CDLL(lib).openblas_get_corename
        fn.restype = ctypes.c_char_p
        core = fn().decode()
        break
    except (OSError, AttributeError):
        pass
print(f"torch {torch.__version__}; BLAS loaded: {', '.join(blas) or 'none found'}; OpenBLAS kernels: {core}", flush=True)
PY
}
summary=$(describe)
coretype="${OPENBLAS_CORETYPE:-}"
if [ -z "$coretype" ] && [[ "$summary" =~ "OpenBLAS kernels: "(Prescott|Core2|Katmai|Northwood|Banias|Atom) ]]; then
  flags=$(grep -m1 '^flags' /proc/cpuinfo)
  if [[ " $flags " == *" avx512_bf16 "* ]]; then coretype=Cooperlake
  elif [[ " $flags " == *" avx512f "* && " $flags " == *" avx512vl "* ]]; then coretype=SkylakeX
  elif [[ " $flags " == *" avx2 "* ]]; then coretype=Haswell
  fi
  if [ -n "$coretype" ]; then
    summary="$(OPENBLAS_CORETYPE=$coretype describe) (OPENBLAS_CORETYPE=$coretype: this OpenBLAS does not recognise the CPU and chose generic kernels)"
  fi
fi
echo "$summary"
echo "OPENBLAS_CORETYPE=$coretype"
echo "$PY"
