"""Multi-process training (``torchrun``): the helpers every bundle's ``multi_gpu_train.json`` overlay calls."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def local_device() -> str:
    """``cuda:<LOCAL_RANK>`` when CUDA is available, else ``cpu`` (gloo)."""
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu"


def init_process_group(device: str) -> None:
    """Join the ``torchrun`` job: nccl on GPUs, gloo on the CPU."""
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.device(device).type == "cuda" else "gloo")
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(device)


def ddp(module: torch.nn.Module, device: str) -> DistributedDataParallel:
    """``module`` on ``device``, wrapped for data-parallel training (checkpoints still hold the bare network)."""
    on_gpu = torch.device(device).type == "cuda"
    return DistributedDataParallel(module.to(device), device_ids=[torch.device(device)] if on_gpu else None)


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
