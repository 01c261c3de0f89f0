"""safetensors files with Hugging Face names, through the safetensors package."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def save_weights(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype = torch.float32) -> None:
    save_file({k: v.detach().to(dtype).contiguous() for k, v in state.items()}, str(path))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor as float32 (artifacts store fp32 or fp16)."""
    return {k: v.float() for k, v in load_file(str(path)).items()}
