"""Checks that PyTorch runs on a fast BLAS before any training starts, and sets the thread count.

Debian's python3-torch links the system libblas.so.3. Without libopenblas0-openmp that is the reference
BLAS, about 30x slower (measured: under 130 tokens/s against 3,000+ for the same pretraining step), so
training there would take days: refuse and say how to fix it.
"""
from __future__ import annotations

import os
import sys


class SlowBlasError(RuntimeError):
    pass


def loaded_blas() -> list[str]:
    import torch

    torch.matmul(torch.ones(64, 64), torch.ones(64, 64))  # makes sure the BLAS is loaded
    with open("/proc/self/maps") as maps:
        return sorted({line.split()[-1] for line in maps if "blas" in line.lower() or "mkl" in line.lower()})


GENERIC_KERNELS = {"Prescott", "Core2", "Katmai", "Northwood", "Banias", "Atom"}


def openblas_core(libs: list[str]) -> str | None:
    import ctypes

    for lib in libs:
        try:
            fn = ctypes.CDLL(lib).openblas_get_corename
            fn.restype = ctypes.c_char_p
            return fn().decode()
        except (OSError, AttributeError):
            continue
    return None


def check_fast_blas() -> str:
    """Returns a description of the BLAS in use; raises SlowBlasError on the reference BLAS."""
    import torch

    config = torch.__config__.show()
    if "BLAS_INFO=mkl" in config or "USE_MKL=ON" in config:
        return "MKL"
    libs = loaded_blas()
    if any("openblas" in lib for lib in libs):
        core = openblas_core(libs)
        if core in GENERIC_KERNELS and not os.environ.get("OPENBLAS_CORETYPE"):
            print(f"warning: OpenBLAS chose its generic {core} kernels (it does not recognise this CPU), 4-5x slower; "
                  "set OPENBLAS_CORETYPE (e.g. SkylakeX or Cooperlake on AVX-512 CPUs, Haswell on AVX2 ones; "
                  "benchmarks/peer/setup.sh prints the right one)", file=sys.stderr)
        return ", ".join(libs) + (f" (kernels: {core})" if core else "")
    raise SlowBlasError(
        "PyTorch is using the reference BLAS (" + (", ".join(libs) or "no BLAS library found") + "), about 30x slower "
        "than OpenBLAS: training would take days. Install the OpenMP OpenBLAS with `bash scripts/setup-python.sh` "
        "(apt-get install libopenblas0-openmp; it becomes the libblas.so.3 alternative), or set "
        "RMBERT_ALLOW_SLOW_BLAS=1 to train anyway (tests of tiny shapes only)."
    )


def prepare(threads: int, allow_slow: bool | None = None) -> str:
    """Sets the intra-op thread count and checks the BLAS. Returns the BLAS description."""
    import torch

    torch.set_num_threads(max(1, threads))
    if allow_slow is None:
        allow_slow = os.environ.get("RMBERT_ALLOW_SLOW_BLAS") == "1"
    try:
        return check_fast_blas()
    except SlowBlasError as error:
        if allow_slow:
            print(f"warning: {error}", file=sys.stderr)
            return "reference BLAS (allowed by RMBERT_ALLOW_SLOW_BLAS)"
        raise
