"""Which device a single-process run uses, the CUDA backend settings, and bf16 autocast.

Core module: no Ray. Ray Train workers and Tune trials with a GPU share get their device from Ray
(it sets CUDA_VISIBLE_DEVICES per trial/worker), so they only ever ask for plain ``cuda``.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from raygan.core.errors import RayganError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; a CUDA device that
    is not there is a RayganError (one line), never a CUDA traceback later."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    kind, _, index = spec.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise RayganError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        built = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA device is visible"
        raise RayganError(f"--device {spec}: {built} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); use --device cpu")
    count = torch.cuda.device_count()
    if index and int(index) >= count:
        raise RayganError(f"--device {spec}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device(spec)


def configure_backends(device: torch.device, deterministic: bool) -> None:
    """CUDA settings for a run (no effect on CPU).

    TF32: under fp32, matmuls and convolutions may use TF32 tensor cores (10-bit mantissa inputs,
    fp32 accumulation), several times faster on Ampere and later; a GAN's rounding noise is far
    above TF32's. Determinism: cuBLAS needs a fixed workspace (CUBLAS_WORKSPACE_CONFIG, read when
    its handle is created, so before the first matmul) and cuDNN must not benchmark algorithms.
    """
    if device.type != "cuda":
        return
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = deterministic
    # Static shapes (fixed batch, 32×32): picking the fastest algorithm once pays off, unless it
    # must be the same algorithm every run.
    torch.backends.cudnn.benchmark = not deterministic


def autocast(device: torch.device, precision: str):
    """bf16 autocast for network forward passes; a no-op context under fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def to_float(out):
    """Network outputs back in fp32 (losses and scores are computed in fp32)."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(to_float(o) for o in out)
    return out


class Autocast(nn.Module):
    """Runs the wrapped network under bf16 autocast and returns fp32 outputs.

    The weights stay fp32 (the optimisers' master copy); autocast casts them per op. Only the train
    steps call through this wrapper; state_dict, checkpoints and DDP see the plain network inside.
    """

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module = module
        self.device_type = device.type

    def forward(self, *args, **kwargs):
        with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16):
            return to_float(self.module(*args, **kwargs))
