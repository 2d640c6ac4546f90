"""Mixed precision: which autocast dtype, and whether a gradient scaler, on which device.

    auto  bf16 autocast on a CUDA GPU with native bf16 (Ampere and later: A100, H100, RTX 30xx+);
          fp16 autocast + a gradient scaler on older CUDA GPUs (T4, V100, P100); fp32 on CPU.
    fp32  no autocast (CUDA matmuls still use TF32, see multitask_classifier.main).
    bf16  bf16 autocast; refused on a GPU without native bf16 (emulated, it is slower than fp32).
    fp16  fp16 autocast + a gradient scaler.

On CPU, an explicit bf16 or fp16 runs torch's CPU autocast (slower than fp32 on most CPUs: for
testing the mixed-precision path without a GPU). Autocast keeps the weights, the optimizer and
the losses in fp32; only the matmuls and attention inside the forward run in the lower precision.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

CHOICES = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class PrecisionError(ValueError):
    """A precision this device cannot run; the message says what to use instead."""


@dataclass(frozen=True)
class Precision:
    name: str         # fp32, bf16 or fp16
    device_type: str  # cpu or cuda: where the autocast applies

    def autocast(self):
        """The context that a forward pass (training or inference) runs in."""
        if DTYPES[self.name] is None:  # fp32: no autocast context at all, the plain eager path
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=DTYPES[self.name])

    def scaler(self) -> torch.amp.GradScaler:
        """fp16's narrow exponent range flushes small gradients to zero: the loss is scaled up
        before backward and the gradients down before the step, and a step whose gradients
        overflowed is skipped (the scale then halves). bf16 and fp32 have fp32's range and need
        no scaling: their scaler is disabled and passes losses, gradients and steps through."""
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")

    def describe(self) -> str:
        how = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler"}
        where = self.device_type
        if where == "cuda":
            where += f" ({torch.cuda.get_device_name()})"
        return f"{how[self.name]} on {where}"


FP32 = Precision("fp32", "cpu")


def native_bf16() -> bool:
    """Whether the current CUDA GPU computes in bf16 natively (not emulated through fp32)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation counted, the plain question is the same one
        return torch.cuda.is_bf16_supported()


def choose(requested: str, device) -> Precision:
    """The precision a run uses for --precision `requested` on `device`."""
    kind = torch.device(device).type
    if requested == "auto":
        if kind != "cuda":
            return Precision("fp32", kind)
        return Precision("bf16" if native_bf16() else "fp16", kind)
    if requested not in DTYPES:
        raise PrecisionError(f"--precision {requested}: choose one of {', '.join(CHOICES)}")
    if requested == "bf16" and kind == "cuda" and not native_bf16():
        raise PrecisionError("--precision bf16: this GPU has no native bf16 (it came with Ampere); "
                             "use --precision fp16 (or auto, which picks it)")
    return Precision(requested, kind)
