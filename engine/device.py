"""The compute device and the one precision policy.

`resolve_device("auto" | "cpu" | "cuda" | "cuda:N")` picks the device. `autocast_dtype` is the one
mixed-precision rule for training and inference alike: bfloat16 on CUDA GPUs that support it
(float16 on older ones), bfloat16 for inference on CPUs that run it natively, float32 otherwise.
`amp_dtype` is the training side of it (autocast on CUDA only: CPU training stays float32).
"""

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


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype for inference, None for plain float32.

    `precision`: 'fp32'; 'fp16' (CUDA); 'bf16'; or 'auto': bfloat16 on CUDA (float16 where the GPU lacks it), bfloat16 on a CPU with
    native bfloat16 support (AVX512-BF16 / AMX, where oneDNN runs it about twice as fast as float32;
    probabilities move by about 0.01 at most), else float32."""
    if precision not in ("auto", "fp32", "fp16", "bf16"):
        raise UserError(f"Unknown precision {precision!r}; use auto, fp32, fp16 or bf16.")
    if precision == "fp32":
        return None
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("float16 inference needs a CUDA GPU; use --precision bf16 or fp32.")
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (else bfloat16 would be emulated, slow)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - a private probe; assume no support when it is missing
        return False


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `device`: bfloat16 on CUDA GPUs that support it, else float16;
    None (no autocast) on the CPU."""
    if device.type != "cuda":
        return None
    return autocast_dtype(device)
