"""The BLAS check refuses the reference BLAS and says how to fix it."""
import pytest

from rmbert_train import env


def test_reference_blas_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(env, "loaded_blas", lambda: ["/usr/lib/x86_64-linux-gnu/blas/libblas.so.3"])
    with pytest.raises(env.SlowBlasError) as error:
        env.prepare(1, allow_slow=False)
    assert "scripts/setup-python.sh" in str(error.value) and "libopenblas0-openmp" in str(error.value)
    assert "reference BLAS" in env.prepare(1, allow_slow=True)


def test_openblas_passes_and_names_its_kernels():
    description = env.prepare(1, allow_slow=False)
    assert "openblas" in description.lower() or description == "MKL"
