"""HTTP API against a real server process: jobs from uploads, earlier uploads and server-side
paths, progress by SSE and polling, every result checked, failures, cancellation."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from samurai.io.video_reader import VideoFileSource
from service.helpers import ServerProcess, read_sse, wait_job, wait_progress

pytestmark = pytest.mark.xdist_group("service")

WIDTH, HEIGHT = 960, 540
BOXES = [[300, 100, 200, 250], [600, 200, 120, 100]]


def post_upload(client: httpx.Client, clip: Path, **fields: str) -> httpx.Response:
    with open(clip, "rb") as f:
        return client.post("/api/jobs", files={"video": (clip.name, f, "video/mp4")}, data=fields)


def box_lines(text: str) -> list[list[int]]:
    lines = text.strip().splitlines()
    return [[int(v) for v in line.split(",")] for line in lines]


def test_page_docs_and_health(server: ServerProcess) -> None:
    with server.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and "Start tracking" in page.text
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/static/style.css").status_code == 200
        assert client.get("/docs").status_code == 200
        paths = client.get("/openapi.json").json()["paths"]
        expected = (
            "/api/jobs",
            "/api/jobs/{job_id}",
            "/api/jobs/{job_id}/events",
            "/api/jobs/{job_id}/results/{kind}",
            "/api/videos/{video_id}/frames/{frame_idx}",
            "/healthz",
        )
        for path in expected:
            assert path in paths
        assert "multipart/form-data" in paths["/api/jobs"]["post"]["requestBody"]["content"]
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["workers_alive"] == 1
        models = client.get("/api/models").json()
        assert {"name": "sam2.1_hiera_t", "available": True} in models["models"]


def test_upload_job_sse_and_every_result(
    server: ServerProcess, clips: dict[str, Path], tmp_path: Path
) -> None:
    with server.client() as client:
        created = post_upload(client, clips["short"], boxes=json.dumps(BOXES))
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        events = read_sse(client, job_id)
        names = [name for name, _ in events]
        assert names[-1] == "end" and set(names[:-1]) <= {"job"}
        progress = [data["progress"] for _, data in events]
        assert progress == sorted(progress)
        job = events[-1][1]
        assert job["state"] == "done", job
        assert job["num_frames"] == 4 and job["frames_done"] == 4 and job["fps"] > 0
        assert job["num_objects"] == 2 and job["attempts"] == 1
        assert set(job["results"]) == {"overlay", "boxes", "rle", "scores", "masks"}
        check_results(client, job, tmp_path, frames=4, objects=2)


def check_results(
    client: httpx.Client, job: dict, tmp_dir: Path, *, frames: int, objects: int
) -> None:
    results = job["results"]
    overlay = client.get(results["overlay"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "video/mp4"
    ranged = client.get(results["overlay"], headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100
    video_file = tmp_dir / "overlay.mp4"
    video_file.write_bytes(overlay.content)
    with VideoFileSource(video_file) as video:
        assert video.num_frames == frames
        assert (video.width, video.height) == (WIDTH, HEIGHT)
        assert len(list(video.iter_frames())) == frames

    boxes = client.get(results["boxes"])
    assert boxes.status_code == 200
    if objects == 1:
        per_object = {"1": boxes.text}
    else:
        assert boxes.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(boxes.content)) as zf:
            per_object = {n[6:-4]: zf.read(n).decode() for n in zf.namelist()}
    assert sorted(per_object) == [str(i) for i in range(1, objects + 1)]
    for text in per_object.values():
        lines = box_lines(text)
        assert len(lines) == frames and all(len(line) == 4 for line in lines)
    single = client.get(results["boxes"], params={"obj_id": 1})
    assert single.status_code == 200 and box_lines(single.text) == box_lines(per_object["1"])

    rle = client.get(results["rle"])
    assert rle.status_code == 200 and rle.headers["content-type"] == "application/json"
    masks = rle.json()
    assert masks["complete"] is True and (masks["height"], masks["width"]) == (HEIGHT, WIDTH)
    assert [f["frame"] for f in masks["frames"]] == list(range(frames))
    for frame in masks["frames"]:
        assert [o["id"] for o in frame["objects"]] == list(range(1, objects + 1))
        assert all(o["rle"]["size"] == [HEIGHT, WIDTH] for o in frame["objects"])

    scores = client.get(results["scores"])
    assert scores.status_code == 200 and scores.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(scores.text)))
    assert len(rows) == frames * objects
    assert set(rows[0]) == {"frame", "object", "iou", "object_score", "present"}

    if "masks" in results:
        archive = client.get(results["masks"])
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
            pngs = sorted(zf.namelist())
            assert len(pngs) == frames and all(n.endswith(".png") for n in pngs)
            assert Image.open(io.BytesIO(zf.read(pngs[0]))).size == (WIDTH, HEIGHT)


def test_earlier_upload_points_and_polling(server: ServerProcess, clips: dict[str, Path]) -> None:
    with server.client() as client, open(clips["short"], "rb") as f:
        uploaded = client.post("/api/videos", files={"video": ("clip.mp4", f, "video/mp4")})
        assert uploaded.status_code == 201, uploaded.text
        video = uploaded.json()
        assert (video["frames"], video["width"], video["height"]) == (4, WIDTH, HEIGHT)
        frame = client.get(video["first_frame_url"])
        assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(frame.content)).size == (WIDTH, HEIGHT)
        assert video["id"] in [v["id"] for v in client.get("/api/videos").json()["videos"]]

        created = client.post(
            "/api/jobs",
            data={
                "video_id": video["id"],
                "points": "[[400, 220], [450, 240], [50, 50]]",
                "labels": "[1, 1, 0]",
                "samurai_mode": "false",
                "outputs": "boxes,scores",
                "max_frames": "2",
            },
        )
        assert created.status_code == 201, created.text
        job = wait_job(client, created.json()["id"])
        assert job["state"] == "done", job
        assert job["params"]["samurai_mode"] is False
        assert set(job["results"]) == {"boxes", "scores"}
        assert job["num_frames"] == 2
        assert len(box_lines(client.get(job["results"]["boxes"]).text)) == 2
        missing = client.get(f"/api/jobs/{job['id']}/results/overlay")
        assert missing.status_code == 404 and "overlay" in missing.json()["detail"]


def test_server_side_path_and_max_frames(
    server: ServerProcess, clips: dict[str, Path], tmp_path: Path
) -> None:
    with server.client() as client:
        created = client.post(
            "/api/jobs",
            data={
                "path": clips["short"].name,  # relative to the allowed root
                "boxes": json.dumps(BOXES[:1]),
                "options": '{"kf_score_weight": 0.15}',
                "max_frames": "2",
            },
        )
        assert created.status_code == 201, created.text
        job = wait_job(client, created.json()["id"])
        assert job["state"] == "done" and job["num_frames"] == 2, job
        check_results(client, job, tmp_path, frames=2, objects=1)
        assert clips["short"].is_file()  # a server-side file is used in place, never moved


def test_failed_job_is_recorded_and_server_keeps_working(
    server: ServerProcess, clips: dict[str, Path]
) -> None:
    """sam2.1_hiera_s is not cached and its download goes to a closed port: the job fails."""
    with server.client() as client:
        created = post_upload(
            client, clips["short"], boxes=json.dumps(BOXES), model="sam2.1_hiera_s"
        )
        assert created.status_code == 201, created.text
        job = wait_job(client, created.json()["id"])
        assert job["state"] == "failed" and job["results"] == {}
        assert "sam2.1_hiera_s" in job["error"] or "download" in job["error"].lower(), job
        assert client.get(f"/api/jobs/{job['id']}/results/boxes").status_code == 409
        health = client.get("/healthz").json()
        assert health["status"] == "ok" and health["workers_alive"] == 1
        after = post_upload(client, clips["short"], boxes=json.dumps(BOXES[:1]), max_frames="1")
        assert wait_job(client, after.json()["id"])["state"] == "done"


def test_cancel_running_job_then_delete(server: ServerProcess, clips: dict[str, Path]) -> None:
    with server.client() as client:
        created = post_upload(client, clips["long"], boxes=json.dumps(BOXES))
        job_id = created.json()["id"]
        wait_progress(client, job_id, 1)
        log_before = server.log.stat().st_size
        cancelled = client.delete(f"/api/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        job = wait_job(client, job_id)
        assert job["state"] == "cancelled" and job["frames_done"] < 12
        assert client.get(f"/api/jobs/{job_id}/results/overlay").status_code == 409
        listed = {j["id"]: j["state"] for j in client.get("/api/jobs").json()["jobs"]}
        assert listed[job_id] == "cancelled"
        job_folder = server.data_dir / "jobs" / job_id
        for _ in range(100):  # the worker removes its files once it has stopped
            if not job_folder.exists():
                break
            time.sleep(0.1)
        assert not job_folder.exists()
        with open(server.log, "rb") as log:  # a cancelled job ends quietly
            log.seek(log_before)
            after_cancel = log.read().decode()
        assert "Traceback" not in after_cancel and "cannot write" not in after_cancel
        assert f"job {job_id} failed" not in after_cancel, after_cancel
        deleted = client.delete(f"/api/jobs/{job_id}")
        assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
        assert client.get(f"/api/jobs/{job_id}").status_code == 404


def test_queued_job_cancel(server: ServerProcess, clips: dict[str, Path]) -> None:
    """A job cancelled before a worker takes it never runs."""
    with server.client() as client:
        first = post_upload(client, clips["short"], boxes=json.dumps(BOXES[:1]), max_frames="2")
        second = post_upload(client, clips["short"], boxes=json.dumps(BOXES[:1]))
        second_id = second.json()["id"]
        assert client.get(f"/api/jobs/{second_id}").json()["state"] == "queued"
        assert client.delete(f"/api/jobs/{second_id}").json()["state"] == "cancelled"
        assert wait_job(client, first.json()["id"])["state"] == "done"
        job = client.get(f"/api/jobs/{second_id}").json()
        assert job["state"] == "cancelled" and job["attempts"] == 0


def test_frames_of_a_video(server: ServerProcess, clips: dict[str, Path]) -> None:
    with server.client() as client, open(clips["short"], "rb") as f:
        video = client.post("/api/videos", files={"video": ("a.mp4", f)}).json()
        last = client.get(f"/api/videos/{video['id']}/frames/3")
        assert last.status_code == 200
        pixels = np.asarray(Image.open(io.BytesIO(last.content)))
        assert pixels.shape == (HEIGHT, WIDTH, 3)
        out_of_range = client.get(f"/api/videos/{video['id']}/frames/4")
        assert out_of_range.status_code == 404 and "out of range" in out_of_range.json()["detail"]
        assert client.delete(f"/api/videos/{video['id']}").json()["state"] == "deleted"
        assert client.get(f"/api/videos/{video['id']}").status_code == 404
