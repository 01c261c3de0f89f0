#!/usr/bin/env bash
# Sets up the PyTorch peer used by benchmarks/engines.ts through scripts/setup-python.sh (Debian's CPU
# build of PyTorch 1.13 with an OpenMP OpenBLAS; the reference BLAS is about 30x slower). Idempotent;
# needs root (apt-get) the first time. Prints a description, the OPENBLAS_CORETYPE to run with (empty: OpenBLAS's
# own choice) and, on its last line, the interpreter to use.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The install itself is the training path's (Debian's python3-torch + OpenMP OpenBLAS, selected as the
# libblas.so.3 alternative, and the project's .venv): one setup for both.
PY=$(bash "$ROOT/scripts/setup-python.sh" | tail -n 1)

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
