"""The repository root, so that default paths work from any directory."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
