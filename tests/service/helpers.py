"""Helpers of the service tests (import as ``service.helpers``): a real server process on 127.0.0.1,
and waiting for jobs by polling or Server-Sent Events.

Servers run ``python -m samurai.cli serve`` with a synthetic ``sam2.1_hiera_t`` checkpoint, a
temporary ``SAMURAI_HOME`` (downloads point at a closed port, so they fail at once) and
``--image-size 256`` for speed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

SERVER_START_TIMEOUT_S = 120.0
JOB_TIMEOUT_S = 300.0
TERMINAL = {"done", "failed", "cancelled"}
TOKEN = "test-token-0123456789abcdef"
"""The bearer token of the shared test server."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``samurai serve`` in a subprocess; its log goes to ``<root>/server-<n>.log``.

    With ``token``, the server reads it from ``<root>/token`` (``--token-file``) and `client`
    sends it as a bearer token.
    """

    def __init__(
        self, root: Path, checkpoint: Path, *extra: str, workers: int = 1, token: str | None = None
    ) -> None:
        self.root, self.checkpoint, self.extra, self.workers = root, checkpoint, extra, workers
        self.token = token
        self.data_dir = root / "data"
        self.db = root / "jobs.db"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0
        self.env = {
            **os.environ,
            "SAMURAI_HOME": str(root / "home"),
            "SAMURAI_CHECKPOINT_BASE_URL": "http://127.0.0.1:9/",
            "PYTHONUNBUFFERED": "1",
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.root / f"server-{self.starts}.log"

    def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        command = [
            sys.executable, "-m", "samurai.cli", "serve", "--port", str(self.port),
            "--workers", str(self.workers), "--data-dir", str(self.data_dir), "--db", str(self.db),
            "--image-size", "256", "--checkpoint", f"sam2.1_hiera_t={self.checkpoint}",
            *self.extra,
        ]  # fmt: skip
        if self.token is not None:
            token_file = self.root / "token"
            token_file.write_text(self.token + "\n")
            token_file.chmod(0o600)
            command += ["--token-file", str(token_file)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start:\n{self.log.read_text()}")
            try:
                health = httpx.get(f"{self.url}/healthz", timeout=2).json()
                if health["workers_alive"] == self.workers:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.kill()
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def descendants(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the server process only (its workers must die on their own)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Ctrl-C, as a user would; SIGKILL (server and workers) if that does not end it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        children = self.descendants()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for child in children:
            if child.is_running():
                child.kill()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers=self.headers)


def wait_job(client: httpx.Client, job_id: str, *, until: set[str] = TERMINAL) -> dict[str, Any]:
    """Poll ``GET /api/jobs/{id}`` until its state is in ``until``."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job['state']} after {JOB_TIMEOUT_S} s")


def wait_progress(client: httpx.Client, job_id: str, frames: int) -> dict[str, Any]:
    """Poll until the job is running with at least ``frames`` frames done."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] == "running" and job["frames_done"] >= frames:
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} made no progress")


def read_sse(client: httpx.Client, job_id: str) -> list[tuple[str, dict[str, Any]]]:
    """All ``(event, data)`` of ``GET /api/jobs/{id}/events`` until the stream ends."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = "message"
    with client.stream("GET", f"/api/jobs/{job_id}/events", timeout=JOB_TIMEOUT_S) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                name = "message"
    return events
