"""Bad requests against a real server: each a 4xx JSON ``{"detail": ...}`` naming the problem, and
nothing stored (no video, no job, no temporary file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.helpers import ServerProcess

pytestmark = pytest.mark.xdist_group("service")

BOX = json.dumps([[300, 100, 200, 250]])
UNKNOWN_ID = "0123456789abcdef0123456789abcdef"


def stored(server: ServerProcess, client: httpx.Client) -> dict[str, Any]:
    return {
        "videos": sorted(os.listdir(server.data_dir / "videos")),
        "tmp": sorted(os.listdir(server.data_dir / "tmp")),
        "listed_videos": len(client.get("/api/videos").json()["videos"]),
        "jobs": len(client.get("/api/jobs").json()["jobs"]),
    }


def expect(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    for word in words:
        assert word.lower() in detail.lower(), detail


@pytest.fixture
def client(server: ServerProcess) -> Any:
    with server.client() as c:
        before = stored(server, c)
        yield c
        assert stored(server, c) == before, "a refused request left something behind"


def upload(client: httpx.Client, name: str, content: bytes, **fields: str) -> httpx.Response:
    return client.post("/api/jobs", files={"video": (name, content, "video/mp4")}, data=fields)


def test_upload_too_large_while_streaming(client: httpx.Client) -> None:
    expect(upload(client, "big.mp4", os.urandom(2_500_000), boxes=BOX), 413, "maximum size", "2")


def test_upload_too_large_by_content_length(client: httpx.Client) -> None:
    expect(upload(client, "huge.mp4", b"\0" * 4_000_000, boxes=BOX), 413, "maximum size")


def test_video_too_long(client: httpx.Client, clips: dict[str, Path]) -> None:
    response = upload(client, "many.mp4", clips["many"].read_bytes(), boxes="[[1, 1, 10, 10]]")
    expect(response, 413, "40 frames", "at most 30")


def test_not_a_video(client: httpx.Client) -> None:
    expect(upload(client, "notes.mp4", b"just some text\n" * 100, boxes=BOX), 415, "notes.mp4")


def test_image_upload_to_videos_is_checked_too(client: httpx.Client) -> None:
    response = client.post("/api/videos", files={"video": ("x.mp4", b"garbage" * 50)})
    expect(response, 415, "x.mp4")


def test_empty_upload(client: httpx.Client) -> None:
    expect(upload(client, "empty.mp4", b"", boxes=BOX), 400, "empty")


@pytest.mark.parametrize(
    ("boxes", "words"),
    [
        ("not json", ["boxes", "json"]),
        ("[]", ["boxes", "non-empty"]),
        ("[[1, 2, 3]]", ["boxes[0]", "[x, y, w, h]"]),
        ('[["a", 1, 2, 3]]', ["boxes[0]", "number"]),
        ("[[10, 10, -5, 20]]", ["boxes[0]", "positive"]),
        ('{"x": 1}', ["boxes", "list"]),
        ("[[2000, 10, 50, 50]]", ["boxes[0]", "outside", "960x540"]),
        ("[[-100, -100, 50, 50]]", ["boxes[0]", "outside"]),
    ],
)
def test_malformed_or_outside_boxes(
    client: httpx.Client, clips: dict[str, Path], boxes: str, words: list[str]
) -> None:
    expect(upload(client, "clip.mp4", clips["short"].read_bytes(), boxes=boxes), 422, *words)


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"boxes": BOX, "model": "sam3_giant"}, 422, ["model", "sam3_giant"]),
        ({"boxes": BOX, "options": '{"speed": 11}'}, 422, ["options", "speed"]),
        ({"boxes": BOX, "options": '{"kf_score_weight": 0.1}', "samurai_mode": "false"}, 422,
         ["samurai_mode"]),
        ({"boxes": BOX, "samurai_mode": "maybe"}, 422, ["samurai_mode"]),
        ({"boxes": BOX, "max_frames": "0"}, 422, ["max_frames"]),
        ({"boxes": BOX, "outputs": "overlay,gif"}, 422, ["outputs", "gif"]),
        ({}, 422, ["boxes", "required"]),
        ({"points": "[[10, 10]]", "labels": "[0]"}, 422, ["labels", "label 1"]),
        ({"points": "[[10, 10]]", "labels": "[1, 1]"}, 422, ["labels"]),
        ({"points": "[[5000, 10]]"}, 422, ["points[0]", "outside"]),
    ],
)  # fmt: skip
def test_bad_job_fields(
    client: httpx.Client, clips: dict[str, Path], fields: dict[str, str], status: int,
    words: list[str],
) -> None:  # fmt: skip
    expect(upload(client, "clip.mp4", clips["short"].read_bytes(), **fields), status, *words)


def test_bad_file_name(client: httpx.Client, clips: dict[str, Path]) -> None:
    response = upload(client, "../../evil.mp4", clips["short"].read_bytes(), boxes=BOX)
    expect(response, 400, "file name", "..")


def test_video_source_required_once(client: httpx.Client, clips: dict[str, Path]) -> None:
    expect(client.post("/api/jobs", data={"boxes": BOX}), 400, "exactly one of")
    no_file_chosen = client.post("/api/jobs", files={"video": ("", b"")}, data={"boxes": BOX})
    expect(no_file_chosen, 400, "exactly one of", "none")
    both = upload(client, "clip.mp4", clips["short"].read_bytes(), boxes=BOX, path="x.mp4")
    expect(both, 400, "exactly one of")
    expect(client.post("/api/jobs", data={"boxes": BOX, "video_id": UNKNOWN_ID}), 404, "video")
    expect(client.post("/api/jobs", data={"boxes": BOX, "video_id": "../x"}), 404, "video")


def test_path_traversal(client: httpx.Client, clips: dict[str, Path], tmp_path: Path) -> None:
    root = clips["short"].parent
    for path in ("../../../../etc/passwd", "/etc/passwd", str(root.parent), "../x/../../etc"):
        response = client.post("/api/jobs", data={"boxes": BOX, "path": path})
        expect(response, 403, "outside the allowed roots")
    outside = tmp_path / "outside.mp4"
    outside.write_bytes(clips["short"].read_bytes())
    link = root / "link-to-outside.mp4"
    link.symlink_to(outside)
    try:
        response = client.post("/api/jobs", data={"boxes": BOX, "path": link.name})
        expect(response, 403, "outside the allowed roots")
    finally:
        link.unlink()
    expect(client.post("/api/jobs", data={"boxes": BOX, "path": "nope.mp4"}), 404, "does not exist")
    not_video = root / "notes.txt"
    not_video.write_text("hello")
    try:
        expect(client.post("/api/jobs", data={"boxes": BOX, "path": "notes.txt"}), 415, "notes")
    finally:
        not_video.unlink()


def test_wrong_content_type(client: httpx.Client) -> None:
    expect(client.post("/api/jobs", json={"boxes": [[1, 2, 3, 4]]}), 415, "multipart")


def test_unknown_ids(client: httpx.Client) -> None:
    for job_id in (UNKNOWN_ID, "nope", "..."):
        expect(client.get(f"/api/jobs/{job_id}"), 404, "job", job_id)
        expect(client.get(f"/api/jobs/{job_id}/events"), 404, "job", job_id)
        expect(client.get(f"/api/jobs/{job_id}/results/overlay"), 404, "job", job_id)
        expect(client.delete(f"/api/jobs/{job_id}"), 404, "job", job_id)
    expect(client.get("/api/jobs/..%2F..%2Fetc%2Fpasswd"), 404, "not found")
    expect(client.get("/api/nothing"), 404, "not found", "/api/nothing")
    expect(client.get(f"/api/videos/{UNKNOWN_ID}/frames/0"), 404, "video")
    expect(client.get(f"/api/jobs/{UNKNOWN_ID}/results/gif"), 422, "kind")
    expect(client.get(f"/api/videos/{UNKNOWN_ID}/frames/first"), 422, "frame_idx")
