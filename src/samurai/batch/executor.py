"""Where jobs run: in this process, in a pool of local processes, or on Ray actors.

Generic over the work: a `WorkerFactory` builds a worker once per process / actor (one model
each) and every task goes to ``worker.run(task)``. Each executor yields ``(index, outcome)``
as tasks end, ``outcome`` being the result or the exception the task raised.

What is retried: a task whose worker *died* under it (a process killed by the OOM killer, a Ray
actor or node lost, a raylet killed) is queued again and runs on another worker, up to
``max_attempts`` deaths; then it fails with `WorkerLost` naming the last cause. What is not:
an exception raised by the task itself (an unreadable video, a bad prompt) is that task's
outcome at once, as running it again would fail the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

__all__ = [
    "RayExecutor",
    "WorkerFactory",
    "WorkerLost",
    "check_ray_resources",
    "connect_ray",
    "import_ray",
    "run_in_process",
    "run_processes",
]

logger = logging.getLogger(__name__)

Outcome = Any  # the task's result, or the BaseException it ended with


class WorkerLost(RuntimeError):
    """A task's worker died under it ``max_attempts`` times (killed, out of memory, node lost)."""


@dataclass(frozen=True)
class WorkerFactory:
    """``cls(*args)`` builds a worker with ``run(task)`` (and optionally ``ready()``); picklable."""

    cls: type
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        return self.cls(*self.args, **self.kwargs)


def run_in_process(worker: Any, tasks: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
    """Run every task with ``worker`` here, in order."""
    for index, task in enumerate(tasks):
        try:
            yield index, worker.run(task)
        except Exception as error:
            yield index, error


_WORKER: Any = None


def _init_process(factory: WorkerFactory) -> None:
    global _WORKER  # one worker (one model) per process, built once
    # Ctrl-C reaches the whole process group: workers leave silently, the driver reports it.
    # The process started with SIGINT blocked (see _submit): one that came meanwhile is
    # delivered on unblocking, to this handler.
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        _WORKER = factory.build()
    except Exception as error:  # every task of this process then fails with the reason
        _WORKER = error


def _process_run(task: Any) -> Any:
    if isinstance(_WORKER, Exception):
        raise ValueError(f"the worker could not start: {_WORKER}")
    return _WORKER.run(task)


def run_processes(
    factory: WorkerFactory, tasks: Sequence[Any], *, workers: int, max_attempts: int = 3
) -> Iterator[tuple[int, Outcome]]:
    """Run tasks on ``workers`` spawned processes; a pool broken by a dying worker is rebuilt.

    A dead process breaks the whole pool, so every task in flight then counts one attempt.
    """
    context = get_context("spawn")
    queue = deque(range(len(tasks)))
    deaths: Counter[int] = Counter()
    while queue:
        pool = ProcessPoolExecutor(
            min(workers, len(queue)),
            mp_context=context,
            initializer=_init_process,
            initargs=(factory,),
        )
        futures: dict[Future[Any], int] = {}
        try:
            while queue and len(futures) < workers:  # only running jobs: a break costs them one try
                index = queue.popleft()
                futures[_submit(pool, tasks[index])] = index
            broken: BrokenProcessPool | None = None
            while futures:
                finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in finished:
                    index = futures.pop(future)
                    error = future.exception()
                    if isinstance(error, BrokenProcessPool):
                        broken = error
                        deaths[index] += 1
                        if deaths[index] >= max_attempts:
                            yield index, WorkerLost(_lost(deaths[index], "a worker process died"))
                        else:
                            queue.appendleft(index)
                        continue
                    yield index, error if error is not None else future.result()
                    if queue and broken is None:
                        index = queue.popleft()
                        futures[_submit(pool, tasks[index])] = index
            if broken is not None:
                logger.warning("a worker process died (%s); restarting the workers", broken)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Dispatch:
    """The bookkeeping of one `RayExecutor.run`: queued task indices, deaths per task, inputs
    prepared, workers starting, busy (ref -> (actor, index)) and idle."""

    queue: deque[int]
    deaths: Counter[int] = field(default_factory=Counter)
    prepared: dict[int, Any] = field(default_factory=dict)
    starting: dict[Any, Any] = field(default_factory=dict)
    busy: dict[Any, tuple[Any, int]] = field(default_factory=dict)
    idle: list[Any] = field(default_factory=list)


def _submit(pool: ProcessPoolExecutor, task: Any) -> Future[Any]:
    """``pool.submit``, with SIGINT blocked meanwhile on the main thread: a worker process it
    starts inherits the mask, so a Ctrl-C while it imports prints no traceback (its initializer
    makes SIGINT a silent exit, then unblocks it). Blocked, not ignored: a Ctrl-C that comes
    during the submit stays pending and stops the driver right after, instead of being lost."""
    if threading.current_thread() is not threading.main_thread():
        return pool.submit(_process_run, task)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(_process_run, task)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _lost(count: int, cause: str) -> str:
    return f"its worker died {count} time(s) while running it; last: {cause}"


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ValueError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--ray-address needs Ray: pip install 'samurai-tracker[eval]' (or pip install ray)"
        ) from None
    return ray


def check_ray_resources(
    available: Mapping[str, float],
    *,
    workers: int,
    cpus: float,
    gpus: float,
    custom: Mapping[str, float] | None = None,
) -> None:
    """Refuse workers the cluster can never place (their tasks would wait forever)."""
    wanted = {"CPU": cpus, "GPU": gpus, **(custom or {})}
    for resource, each in wanted.items():
        total = available.get(resource, 0.0)
        if each > 0 and each > total:
            raise ValueError(
                f"a worker needs {each:g} {resource} but the Ray cluster has {total:g}: "
                "lower --threads / --gpus-per-worker, or add nodes"
            )
    for resource in ("CPU", "GPU"):
        each, total = wanted[resource], available.get(resource, 0.0)
        if each > 0 and workers * each > total:
            logger.warning(
                "%d workers x %g %s exceed the cluster's %g: some start when others end",
                workers,
                each,
                resource,
                total,
            )


class RayExecutor:
    """Ray actors, one worker (one model) each, fed one task at a time.

    Use as a context manager: it connects to (or, for ``address="local"``, starts) Ray and
    stops what it started on exit. A dead actor is replaced by a new one, which Ray places on
    any node with room; the task it was running goes back to the front of the queue.

    Args:
        factory: builds the worker inside each actor.
        address: ``"local"`` (start a Ray instance here), ``"auto"``, ``"HOST:PORT"`` or
            ``"ray://HOST:10001"``.
        workers: number of actors.
        cpus: CPUs each actor asks for (its torch threads).
        gpus: GPUs each actor asks for (fractions share a GPU).
        resources: custom Ray resources each actor asks for (pins actors to nodes having them).
        max_attempts: deaths of a task's worker before the task fails with `WorkerLost`.
        prepare: called on the driver before a task is first sent (e.g. to put its input into
            the object store); its return value is sent instead and reused on retries.
    """

    def __init__(
        self,
        factory: WorkerFactory,
        *,
        address: str,
        workers: int,
        cpus: float = 1.0,
        gpus: float = 0.0,
        resources: Mapping[str, float] | None = None,
        max_attempts: int = 3,
        prepare: Callable[[Any], Any] | None = None,
    ) -> None:
        if workers < 1 or max_attempts < 1:
            raise ValueError("workers and max_attempts must be >= 1")
        self.factory, self.address, self.workers = factory, address, workers
        self.cpus, self.gpus, self.resources = cpus, gpus, dict(resources or {})
        self.max_attempts, self.prepare = max_attempts, prepare
        self.ray = import_ray()
        self._started = False
        self._actors: list[Any] = []
        self._remote_class: Any = None
        self.nodes: Counter[str] = Counter()  # node -> tasks completed there

    def __enter__(self) -> RayExecutor:
        ray = self.ray
        if not ray.is_initialized():
            connect_ray(self.address, cpus=int(self.workers * self.cpus))
            self._started = True
        try:
            check_ray_resources(
                ray.cluster_resources(),
                workers=self.workers,
                cpus=self.cpus,
                gpus=self.gpus,
                custom=self.resources,
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        for actor in self._actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead, or Ray is going down
                logger.debug("kill of a batch actor failed", exc_info=True)
        self._actors.clear()
        if self._started:
            self.ray.shutdown()
            self._started = False

    def _prepare(self, task: Any) -> Any:
        return task if self.prepare is None else self.prepare(task)

    def _spawn(self, starting: dict[Any, Any]) -> None:
        if self._remote_class is None:
            options: dict[str, Any] = {"num_cpus": self.cpus, "num_gpus": self.gpus}
            if self.resources:
                options["resources"] = self.resources
            remote = self.ray.remote(max_restarts=0, max_task_retries=0, **options)
            self._remote_class = remote(self.factory.cls)
        actor = self._remote_class.remote(*self.factory.args, **self.factory.kwargs)
        self._actors.append(actor)
        starting[actor.ready.remote()] = actor

    def run(self, tasks: Sequence[Any]) -> Iterator[tuple[int, Outcome]]:
        """Yield ``(index, outcome)`` for every task, as they end."""
        state = _Dispatch(queue=deque(range(len(tasks))))
        for _ in range(min(self.workers, len(tasks))):
            self._spawn(state.starting)
        while state.queue or state.busy:
            yield from self._hand_out(tasks, state)
            if not state.busy and not state.starting:
                self._spawn(state.starting)
            ready, _ = self.ray.wait([*state.starting, *state.busy], num_returns=1, timeout=60.0)
            if not ready:
                if not state.busy:
                    logger.warning("waiting for Ray to place a worker (is the cluster big enough?)")
                continue
            if ready[0] in state.starting:
                self._worker_started(ready[0], state)
            else:
                yield from self._task_ended(ready[0], state)

    def _hand_out(self, tasks: Sequence[Any], state: _Dispatch) -> Iterator[tuple[int, Outcome]]:
        """Give queued tasks to idle workers (a task's input is prepared once, on first use)."""
        while state.idle and state.queue:
            index = state.queue.popleft()
            if index not in state.prepared:
                try:
                    state.prepared[index] = self._prepare(tasks[index])
                except Exception as error:  # e.g. the input cannot be read on the driver
                    yield index, error
                    continue
            actor = state.idle.pop()
            state.busy[actor.run.remote(state.prepared[index])] = (actor, index)

    def _worker_started(self, ref: Any, state: _Dispatch) -> None:
        actor = state.starting.pop(ref)
        try:
            node = self.ray.get(ref)
        except self._died as error:
            if "creation task" in str(error):  # the worker's __init__ failed: fatal
                lines = [line.strip() for line in str(error).splitlines() if line.strip()]
                reason = lines[-1] if lines else type(error).__name__  # the cause
                raise ValueError(f"the Ray workers cannot start: {reason}") from None
            self._forget(actor)  # its node went away before it started: start another
            self._spawn(state.starting)
            return
        logger.info("a batch worker is ready on node %s", node)
        state.idle.append(actor)

    def _task_ended(self, ref: Any, state: _Dispatch) -> Iterator[tuple[int, Outcome]]:
        actor, index = state.busy.pop(ref)
        try:
            outcome = self.ray.get(ref)
        except self._died as error:  # the worker died: queue the task again, replace the worker
            state.deaths[index] += 1
            self._forget(actor)
            self._spawn(state.starting)
            logger.warning("a worker died running task %d: %s", index, _first_line(error))
            if state.deaths[index] < self.max_attempts:
                state.queue.appendleft(index)
                return
            state.prepared.pop(index, None)
            yield index, WorkerLost(_lost(state.deaths[index], _first_line(error)))
            return
        except self.ray.exceptions.RayTaskError as error:
            outcome = getattr(error, "cause", None) or error
        except Exception as error:
            outcome = error
        state.idle.append(actor)
        state.prepared.pop(index, None)
        node = getattr(outcome, "node", None)
        if node is not None:
            self.nodes[str(node)] += 1
        yield index, outcome

    @property
    def _died(self) -> tuple[type[BaseException], ...]:
        return (self.ray.exceptions.RayActorError, self.ray.exceptions.ObjectLostError)

    def _forget(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:
            logger.debug("kill of a dead actor failed", exc_info=True)
        if actor in self._actors:
            self._actors.remove(actor)


def connect_ray(address: str, *, cpus: int = 1) -> Any:
    """``ray.init`` for ``address``; returns the ``ray`` module.

    ``"local"`` starts a new Ray instance here with at least ``cpus`` CPUs (never joining a
    cluster already running on this machine); any other address must be reachable, else one
    line (ValueError) instead of Ray's minutes of retries.
    """
    ray = import_ray()
    if address == "local":
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 1, cpus),
            include_dashboard=False,
            logging_level=logging.WARNING,
        )
        return ray
    _check_reachable(address)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"cannot connect to Ray at {address}: {reason}") from None
    return ray


def _check_reachable(address: str) -> None:
    """A ``HOST:PORT`` that refuses connections is one line at once (``ray.init`` retries for
    minutes); ``auto`` and ``ray://`` addresses are left to Ray."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ValueError(f"cannot connect to Ray at {address}: {reason}") from None


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
