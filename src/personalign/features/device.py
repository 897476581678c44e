"""Where neural encoders run: ``device="auto" | "cpu" | "cuda" | "cuda:N"`` and the precision that goes with it.

``auto`` is CUDA when torch sees a GPU, otherwise the CPU; on CUDA the encoders compute in float16 by default
(``precision="auto"``), on the CPU in float32. The vectors they return are float32 either way; float16 ones agree
with float32 ones to about 1e-3 per coordinate, so both share one feature cache (the identity of an encoder is its
weights, not where it ran).
"""

from __future__ import annotations

from personalign.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16")


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (False when torch is a CPU build)."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str | None = "auto") -> str:
    """``"cpu"`` or ``"cuda[:N]"`` for a requested device; ``auto`` (or None) picks CUDA when available.

    Asking for CUDA on a machine without it is an error, not a silent fall-back to the CPU.
    """
    d = "auto" if device is None else str(device).strip().lower()
    if d == "auto":
        return "cuda" if cuda_available() else "cpu"
    if d == "cpu":
        return "cpu"
    if d == "cuda" or (d.startswith("cuda:") and d[5:].isdigit()):
        if not cuda_available():
            raise ConfigError(f"device {device!r}: torch sees no CUDA device here (use --device cpu or auto)")
        return d
    raise ConfigError(f"device {device!r}: expected auto, cpu, cuda or cuda:N")


def resolve_half(device: str, precision: str = "auto") -> bool:
    """Whether to compute in float16 on the (resolved) ``device``: by default on CUDA only."""
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if p == "fp16" and not device.startswith("cuda"):
        raise ConfigError("precision fp16 needs a CUDA device (the CPU computes in fp32)")
    return p == "fp16" or (p == "auto" and device.startswith("cuda"))
