"""Helpers of the service-on-Ray tests (import as ``service.ray_helpers``): the same jobs sent to
a server, their results downloaded byte for byte, and the job history read from the database."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

from service.helpers import wait_job

BOX = json.dumps([[300, 100, 200, 250]])
JOBS: list[tuple[str, dict[str, str]]] = [
    ("short", {"boxes": BOX}),
    ("long", {"boxes": json.dumps([[250, 80, 260, 300]]), "max_frames": "5"}),
    ("short", {"points": "[[400, 220], [100, 50]]", "labels": "[1, 0]", "samurai_mode": "false"}),
    ("short", {"boxes": json.dumps([[300, 100, 200, 250], [0, 0, 120, 90]])}),
]
"""(clip, form fields): one box, a cut-off longer clip, clicks with plain SAM 2, two objects."""


def submit(client: httpx.Client, clip: Path, fields: dict[str, str]) -> str:
    with open(clip, "rb") as f:
        response = client.post("/api/jobs", files={"video": (clip.name, f)}, data=fields)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def results(client: httpx.Client, job: dict[str, Any]) -> dict[str, bytes]:
    """Every result of a done job: kind (``boxes/<object>`` per object) -> bytes."""
    assert job["state"] == "done", job
    found = {}
    for kind, url in job["results"].items():
        if kind == "boxes":
            for obj in range(1, job["num_objects"] + 1):
                found[f"boxes/{obj}"] = client.get(url, params={"obj_id": obj}).content
        else:
            found[kind] = client.get(url).content
    return found


def run_jobs(client: httpx.Client, clips: dict[str, Path]) -> list[dict[str, bytes]]:
    """`JOBS` queued at once, then each one's results."""
    ids = [submit(client, clips[clip], fields) for clip, fields in JOBS]
    return [results(client, wait_job(client, job_id)) for job_id in ids]


def job_events(db: Path, job_id: str) -> list[tuple[str, int, str | None]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT event, attempt, detail FROM job_events WHERE job_id = ? ORDER BY rowid",
            (job_id,),
        )
        return list(rows)


def workers_of(db: Path) -> set[str]:
    """Node part of every worker name that ran a job (``ray-N@<node>``)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT detail FROM job_events WHERE event = 'claimed'")
        return {str(detail).split("@", 1)[1] for (detail,) in rows}


def _frames(video: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(video)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def differences(got: list[dict[str, bytes]], reference: list[dict[str, bytes]]) -> list[str]:
    """``job index/kind`` of every result that differs. Byte for byte, except: ``masks.json``
    names the video by its path on each server (compared without it), and the overlay MP4 is
    compared decoded (x264's threaded encoding of 960x540 frames differs run to run here, even
    between two runs of the local workers; the frames it encodes are the same)."""
    found = []
    for index, (mine, theirs) in enumerate(zip(got, reference, strict=True)):
        for kind in sorted(set(mine) | set(theirs)):
            a, b = mine.get(kind), theirs.get(kind)
            if a is None or b is None:
                same = False
            elif kind == "rle":
                left, right = json.loads(a), json.loads(b)
                same = left.pop("video").endswith("/video.mp4") and left == {
                    k: v for k, v in right.items() if k != "video"
                }
            elif kind == "overlay":
                fa, fb = _frames(a), _frames(b)
                same = len(fa) == len(fb) and all(
                    x.shape == y.shape and np.abs(x.astype(int) - y).mean() < 0.5
                    for x, y in zip(fa, fb, strict=True)
                )
            else:
                same = a == b
            if not same:
                found.append(f"{index}/{kind}")
    return found


def crashing_factory(variant: str, **options: Any) -> Any:
    """A manager factory whose actor process dies (a real crash) when a job needs the model."""
    import os

    os._exit(1)
