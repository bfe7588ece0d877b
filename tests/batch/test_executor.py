"""The executors' pure parts: what a Ray cluster must offer, and devices for local workers."""

from __future__ import annotations

import logging
from multiprocessing import get_context

import pytest

from samurai.batch.executor import check_ray_resources
from samurai.batch.placement import gpu_queue, take_device


def test_a_worker_the_cluster_can_never_place_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a worker needs 2 GPU but the Ray cluster has 1"):
        check_ray_resources({"CPU": 16.0, "GPU": 1.0}, workers=1, cpus=1, gpus=2.0)
    with pytest.raises(ValueError, match=r"a worker needs 1 gpu_node but the Ray cluster has 0"):
        check_ray_resources({"CPU": 4.0}, workers=1, cpus=1, gpus=0.0, custom={"gpu_node": 1.0})


def test_more_workers_than_the_cluster_holds_start_in_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="samurai.batch.executor"):
        check_ray_resources({"CPU": 16.0, "GPU": 1.0}, workers=4, cpus=4, gpus=0.25)
    assert caplog.records == []  # fits exactly
    with caplog.at_level(logging.WARNING, logger="samurai.batch.executor"):
        check_ray_resources({"CPU": 2.0}, workers=3, cpus=1, gpus=0.0)
    assert [r.getMessage() for r in caplog.records] == [
        "3 workers x 1 CPU exceed the cluster's 2: some start when others end"
    ]


def test_local_workers_take_gpus_in_turn_and_put_them_back() -> None:
    assert gpu_queue("cpu", 4) is None
    queue = get_context("spawn").SimpleQueue()
    for name in ("cuda:0", "cuda:1"):
        queue.put(name)
    # a pool rebuilt after a death starts new workers: they must still find a device each
    taken = [take_device(queue) for _ in range(4)]
    assert taken == ["cuda:0", "cuda:1", "cuda:0", "cuda:1"]
