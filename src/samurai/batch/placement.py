"""Where a worker runs: a device for each local worker process, and the node it is on."""

from __future__ import annotations

import socket
import sys
from multiprocessing import get_context
from typing import Any

__all__ = ["gpu_queue", "node_name", "take_device"]


def gpu_queue(device: str, workers: int) -> Any:
    """With ``cuda`` and several GPUs: a queue handing local worker processes ``cuda:0``,
    ``cuda:1``, ... in turn (pass it to the workers, which call `take_device`); None otherwise.
    Ray assigns GPUs itself."""
    if device != "cuda":
        return None
    import torch

    count = torch.cuda.device_count()
    if count < 2:
        return None
    queue = get_context("spawn").SimpleQueue()
    for index in range(workers):
        queue.put(f"cuda:{index % count}")
    return queue


def take_device(devices: Any) -> str:
    """A worker's device from a `gpu_queue`, put back in line so that the workers of a pool
    rebuilt after a death find one too."""
    device = devices.get()
    devices.put(device)
    return str(device)


def node_name() -> str:
    """Where this worker runs: the Ray node id inside a Ray worker, else the host name."""
    ray = sys.modules.get("ray")  # only set in Ray workers: no import cost elsewhere
    if ray is not None and ray.is_initialized():
        return str(ray.get_runtime_context().get_node_id())
    return socket.gethostname()
