"""Choosing the compute device: `resolve_device("auto" | "cpu" | "cuda" | "cuda:N")`."""

from __future__ import annotations

import logging

import torch

from engine.errors import UserError

log = logging.getLogger(__name__)


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for a user's choice; 'auto' picks CUDA when available, else the CPU.

    Raises UserError when CUDA is asked for and none is usable.
    """
    if isinstance(name, torch.device):
        return name
    name = (name or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError("CUDA was requested but no CUDA GPU is available; use --device cpu "
                            "or --device auto.")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"There is no GPU {name}; this machine has "
                            f"{torch.cuda.device_count()}.")
        return device
    raise UserError(f"Unknown device {name!r}; use auto, cpu or cuda.")


def is_cuda(device: torch.device) -> bool:
    return device.type == "cuda"
