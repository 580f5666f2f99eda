"""Where tensors go: CUDA when available, else CPU; an explicit choice ("cpu", "cuda", "cuda:1") wins."""

import torch


def pick_device(override: str = "") -> torch.device:
    override = (override or "").strip().lower()
    if override:
        if override.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"ML_DEVICE={override} but CUDA is not available on this machine")
        return torch.device(override)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
