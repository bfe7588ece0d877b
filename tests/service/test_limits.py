"""Limits beyond bytes, against the shared real server: frame size checked from the container
header, a decoded-pixel budget per job, JSON nesting, and the API server's memory under
repeated and concurrent frame requests of 4096x4096 videos."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from samurai.io.probe import probe_header
from samurai.io.video_writer import write_video
from service.helpers import ServerProcess

pytestmark = pytest.mark.xdist_group("service")

BOX = json.dumps([[300, 100, 200, 250]])


@pytest.fixture(scope="module")
def huge_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``wide``: 2 frames of 8192x16 (over 4096x4096); ``big``: 3 frames of 4096x4096."""
    root = tmp_path_factory.mktemp("huge")
    wide = root / "wide.mp4"
    write_video(wide, [np.zeros((16, 8192, 3), np.uint8)] * 2, fps=10)
    ramp = (np.arange(4096, dtype=np.uint16) // 16).astype(np.uint8)
    frames = []
    for i in range(3):
        frame = np.empty((4096, 4096, 3), np.uint8)
        frame[..., 0] = ramp[None, :] + i * 8
        frame[..., 1] = ramp[:, None]
        frame[..., 2] = 128
        frames.append(frame)
    big = root / "big.mp4"
    write_video(big, frames, fps=10, options={"preset": "ultrafast", "crf": "40"})
    return {"wide": wide, "big": big}


def test_frame_size_refused_from_the_header(
    server: ServerProcess, huge_clips: dict[str, Path]
) -> None:
    header = probe_header(huge_clips["wide"])
    assert (header.width, header.height, header.frames) == (8192, 16, 2)
    content = huge_clips["wide"].read_bytes()
    with server.client() as client:
        before = len(client.get("/api/videos").json()["videos"])
        for url, fields in (("/api/videos", {}), ("/api/jobs", {"boxes": "[[1, 1, 8, 8]]"})):
            response = client.post(url, files={"video": ("w.mp4", content)}, data=fields)
            assert response.status_code == 413, response.text
            detail = response.json()["detail"]
            assert "8192x16" in detail and "4096x4096" in detail
        assert len(client.get("/api/videos").json()["videos"]) == before


def test_decoded_pixel_budget_per_job(server: ServerProcess, clips: dict[str, Path]) -> None:
    with server.client() as client:
        fields = {"path": clips["double"].name, "boxes": BOX}
        refused = client.post("/api/jobs", data=fields)
        assert refused.status_code == 413, refused.text
        assert "megapixels" in refused.json()["detail"] and "max_frames" in refused.json()["detail"]
        accepted = client.post("/api/jobs", data={**fields, "max_frames": "12"})
        assert accepted.status_code == 201, accepted.text
        assert client.delete(f"/api/jobs/{accepted.json()['id']}").status_code == 200


@pytest.mark.parametrize("field", ["boxes", "points", "labels", "options", "outputs"])
def test_deeply_nested_json_fields(server: ServerProcess, field: str) -> None:
    with server.client() as client:
        for deep in ("[" * 2000 + "]" * 2000, '{"a": ' * 2000 + "1" + "}" * 2000):
            fields = {"path": "bedroom4.mp4", "boxes": BOX, "points": "[[1, 2]]", field: deep}
            response = client.post("/api/jobs", data=fields)
            assert response.status_code == 422, response.text
            detail = response.json()["detail"]
            assert field in detail and len(detail) <= 300, detail
            if field != "outputs" or deep.startswith("["):  # outputs may be a comma list
                assert "nested" in detail, detail
        assert client.get("/healthz").status_code == 200


def test_frame_requests_keep_server_memory_flat(
    server: ServerProcess, huge_clips: dict[str, Path]
) -> None:
    """51 frame requests of 4096x4096 videos (4 at a time) and 17 uploads: the API server's RSS
    stays within 100 MB of where it started; previews are scaled to 1920 pixels."""
    assert server.proc is not None
    process = psutil.Process(server.proc.pid)
    content = huge_clips["big"].read_bytes()
    with server.client() as client:

        def upload() -> str:
            response = client.post("/api/videos", files={"video": ("big.mp4", content)})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        def frame(request: tuple[str, int]) -> bytes:
            response = client.get(f"/api/videos/{request[0]}/frames/{request[1]}")
            assert response.status_code == 200, response.text
            return response.content

        videos = [upload()]
        first = Image.open(io.BytesIO(frame((videos[0], 0))))
        assert first.size == (1920, 1920)
        start = process.memory_info().rss
        videos += [upload() for _ in range(16)]
        requests = [(video, i) for video in videos for i in range(3)]
        with ThreadPoolExecutor(4) as pool:
            assert len(list(pool.map(frame, requests))) == 51
        grown = (process.memory_info().rss - start) / 2**20
        for video in videos:
            client.delete(f"/api/videos/{video}")
    assert grown < 100, f"the API server's RSS grew by {grown:.0f} MB"


def test_form_size_limits(server: ServerProcess) -> None:
    with server.client() as client:
        many = {f"field{i}": "x" for i in range(40)}
        response = client.post("/api/jobs", data=many, files={"unused": ("", b"")})
        assert response.status_code == 400 and "form fields" in response.json()["detail"]
        big = client.post("/api/jobs", files={"boxes": (None, "[" + "1, " * 30_000 + "1]")})
        assert big.status_code == 413 and "boxes" in big.json()["detail"]
        header = client.post("/api/jobs", files={"x" * 9000: (None, "1")}, data={"boxes": BOX})
        assert header.status_code == 400 and "header" in header.json()["detail"]
