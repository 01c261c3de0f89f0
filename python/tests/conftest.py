import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
# Tests use tiny shapes; they must run wherever the suite runs, whatever BLAS is installed.
os.environ.setdefault("RMBERT_ALLOW_SLOW_BLAS", "1")
