"""How ``samurai serve --ray-address`` places its jobs on a Ray cluster (`RaySettings`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_ATTEMPTS = 3
"""A job whose Ray actor dies this many times under it (node lost, out of memory, a crash)
fails with the last reason instead of going back to the queue."""


@dataclass(frozen=True)
class RaySettings:
    """Where and how big the service's Ray actors are.

    Attributes:
        address: ``local`` (a private Ray instance started with the server), ``auto``,
            ``HOST:PORT`` or ``ray://HOST:10001``.
        cpus_per_job: CPUs each actor asks for (its torch threads; 0 reserves none).
        gpus_per_job: GPUs each actor asks for (fractions share a GPU); 0 on CPU.
        max_jobs_per_node: most actors (jobs at once) per node; None = as many as the node's
            CPUs, GPUs and custom resources hold.
        resources: custom Ray resources each actor asks for (only nodes having them run jobs).
        max_attempts: actor deaths under one job before the job fails.
    """

    address: str
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0
    max_jobs_per_node: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    max_attempts: int = MAX_ATTEMPTS

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("--ray-address: expected local, auto, HOST:PORT or ray://HOST:PORT")
        if self.cpus_per_job < 0 or self.gpus_per_job < 0:
            raise ValueError("--threads-per-worker must be >= 1 and --gpus-per-job >= 0")
        if self.max_jobs_per_node is not None and self.max_jobs_per_node < 1:
            raise ValueError("--max-jobs-per-node must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("--max-attempts must be at least 1")
        for name, amount in self.resources.items():
            if not name or not amount > 0:
                raise ValueError(f"--ray-resources: {name!r} needs a positive amount")

    def jobs_on(self, node_resources: Mapping[str, float]) -> int:
        """How many actors a node with these total resources runs at once (0: none fits)."""
        wanted = {"CPU": self.cpus_per_job, "GPU": self.gpus_per_job, **self.resources}
        fits = [
            math.floor(node_resources.get(name, 0.0) / amount + 1e-9)
            for name, amount in wanted.items()
            if amount > 0
        ]
        count = min(fits) if fits else 1
        if self.max_jobs_per_node is not None:
            count = min(count, self.max_jobs_per_node)
        return max(0, count)
