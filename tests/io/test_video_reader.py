"""Video file and live stream sources, on real files encoded in the test."""

from __future__ import annotations

import http.server
import logging
import random
import threading
import tracemalloc
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from samurai.io.frames import FrameSourceError, open_source
from samurai.io.video_reader import StreamSource, VideoFileSource
from samurai.io.video_writer import write_video

SHORT_GOP = {"crf": "18", "preset": "veryfast", "g": "12"}


def synthetic_frames(num: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """Moving noise with the frame number burnt in, so every frame differs."""
    base = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    frames = []
    for i in range(num):
        frame = np.roll(base, 2 * i, axis=1)
        frame[:8, :8] = i % 256
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def bedroom_rgb(bedroom_frames: list[Path]) -> list[np.ndarray]:
    return [np.array(Image.open(path).convert("RGB")) for path in bedroom_frames[:10]]


@pytest.fixture(scope="module")
def bedroom_videos(tmp_path_factory: pytest.TempPathFactory, bedroom_rgb) -> dict[str, Path]:
    """The first 10 bedroom frames as H.264 mp4, H.264 mkv and VP9 webm at 24 fps."""
    root = tmp_path_factory.mktemp("videos")
    videos = {ext: root / f"bedroom.{ext}" for ext in ("mp4", "mkv", "webm")}
    for path in videos.values():
        assert write_video(path, bedroom_rgb, fps=24) == 10
    return videos


@pytest.fixture(params=["mp4", "mkv", "webm"])
def bedroom_video(request: pytest.FixtureRequest, bedroom_videos) -> Path:
    return bedroom_videos[request.param]


def decode_all(source) -> tuple[list[int], list[np.ndarray]]:
    pairs = list(source.iter_frames())
    return [idx for idx, _ in pairs], [frame for _, frame in pairs]


# ----------------------------------------------------------------------------- video files


def test_metadata(bedroom_video: Path) -> None:
    # mp4 stores the frame count; mkv and webm do not, so the packets are counted.
    with VideoFileSource(bedroom_video) as source:
        assert (source.num_frames, source.fps) == (10, 24.0)
        assert (source.height, source.width) == (540, 960)
        assert source.seekable and source.name == str(bedroom_video)


def test_iteration_and_random_access_agree(bedroom_video: Path, bedroom_rgb) -> None:
    with VideoFileSource(bedroom_video) as source:
        indices, frames = decode_all(source)
        assert indices == list(range(10))
        assert all(f.shape == (540, 960, 3) and f.dtype == np.uint8 for f in frames)
        for idx in [5, 0, 9, 3, 4, 4, 2, 8]:
            np.testing.assert_array_equal(source.get(idx), frames[idx])
        # lossy codecs, but close to the JPEG frames they were encoded from
        diffs = [
            np.abs(f.astype(np.int16) - ref).mean()
            for f, ref in zip(frames, bedroom_rgb, strict=True)
        ]
        assert max(diffs) < 4.0


def test_reverse_and_offsets(bedroom_video: Path) -> None:
    with VideoFileSource(bedroom_video) as source:
        _, frames = decode_all(source)
        backward = list(source.iter_frames(reverse=True))
        assert [idx for idx, _ in backward] == list(range(9, -1, -1))
        for idx, frame in backward:
            np.testing.assert_array_equal(frame, frames[idx])
        part = list(source.iter_frames(3, 7))
        assert [idx for idx, _ in part] == [3, 4, 5, 6]
        for idx, frame in part + list(source.iter_frames(6, 8, reverse=True)):
            np.testing.assert_array_equal(frame, frames[idx])
        assert [idx for idx, _ in source.iter_frames(8, 100)] == [8, 9]
        assert list(source.iter_frames(10)) == []
        with pytest.raises(ValueError, match="invalid frame range"):
            source.iter_frames(-1)
        with pytest.raises(IndexError, match="out of range"):
            source.get(10)


@pytest.mark.parametrize(
    ("suffix", "codec", "options"),
    [
        ("mp4", "libx264", SHORT_GOP),
        ("mkv", "libx264", {**SHORT_GOP, "x264-params": "open-gop=1"}),
        ("webm", "libvpx-vp9", {"g": "12", "deadline": "realtime", "cpu-used": "8"}),
        # H.264 in AVI: B-frames get made-up timestamps, so frames must be counted, not looked up
        ("avi", "libx264", SHORT_GOP),
    ],
)
def test_seeking_across_keyframes(tmp_path: Path, suffix: str, codec: str, options) -> None:
    path = tmp_path / f"gop.{suffix}"
    write_video(path, synthetic_frames(60), fps=25, codec=codec, options=options)
    with VideoFileSource(path, cache_size=3, reverse_chunk=7) as source:
        indices, frames = decode_all(source)
        assert indices == list(range(60)) and source.num_frames == 60
        order = list(range(60))
        random.Random(0).shuffle(order)
        for idx in order:
            np.testing.assert_array_equal(source.get(idx), frames[idx], err_msg=f"frame {idx}")
        backward = list(source.iter_frames(13, 50, reverse=True))
        assert [idx for idx, _ in backward] == list(range(49, 12, -1))
        for idx, frame in backward + list(source.iter_frames(37, 45)):
            np.testing.assert_array_equal(frame, frames[idx])


def test_odd_size_and_lossless_rgb(tmp_path: Path) -> None:
    """Odd sizes and RGB codecs take PyAV's rgb24 path; lossless FFV1 must round-trip exactly."""
    frames = synthetic_frames(12, height=47, width=63)
    path = tmp_path / "odd.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25, options={"g": "5"})
        stream.width, stream.height, stream.pix_fmt = 63, 47, "bgr0"
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="bgr0")
            video_frame.pts, video_frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    with VideoFileSource(path) as source:
        assert (source.height, source.width, source.num_frames) == (47, 63, 12)
        for idx, frame in source.iter_frames(reverse=True):
            np.testing.assert_array_equal(frame, frames[idx])
        np.testing.assert_array_equal(source.get(7), frames[7])


def test_memory_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    write_video(path, synthetic_frames(300, height=96, width=128), fps=30)
    frame_bytes = 96 * 128 * 3
    with VideoFileSource(path, cache_size=4, reverse_chunk=16) as source:
        tracemalloc.start()
        try:
            assert sum(1 for _ in source.iter_frames()) == 300
            forward_peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.reset_peak()
            assert sum(1 for _ in source.iter_frames(reverse=True)) == 300
            reverse_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # 300 frames would be 11 MB; a handful may be alive at once
        assert forward_peak < 10 * frame_bytes
        assert reverse_peak < 16 * frame_bytes + 10 * frame_bytes
        for idx in range(0, 300, 7):
            source.get(idx)
            assert len(source._cache) <= 4


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(FrameSourceError, match=r"video file not found: .*missing\.mp4"):
        VideoFileSource(tmp_path / "missing.mp4")

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(FrameSourceError, match=r"not a readable video: .*notes\.mp4"):
        VideoFileSource(text)

    empty = tmp_path / "empty.mkv"  # a header and no frames
    with av.open(str(empty), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(FrameSourceError, match=r"no video frames in .*empty\.mkv"):
        VideoFileSource(empty)

    audio = tmp_path / "audio.wav"
    with av.open(str(audio), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16")
        samples.sample_rate, samples.pts = 8000, 0
        container.mux(stream.encode(samples))
        container.mux(stream.encode(None))
    with pytest.raises(FrameSourceError, match=r"no video stream in .*audio\.wav"):
        VideoFileSource(audio)

    # an MPEG-4 AVI whose fourcc no decoder knows
    avi = tmp_path / "part2.avi"
    write_video(avi, synthetic_frames(3), fps=25, codec="mpeg4", options={})
    unknown = tmp_path / "unknown.avi"
    unknown.write_bytes(avi.read_bytes().replace(b"FMP4", b"ZZZZ"))
    with pytest.raises(FrameSourceError, match=r"unsupported video codec in .*unknown\.avi"):
        VideoFileSource(unknown)


def test_undecodable_packets(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
        for i in range(5):
            packet = av.Packet(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
            packet.stream, packet.pts, packet.dts = stream, 40 * i, 40 * i
            packet.time_base = Fraction(1, 1000)
            container.mux(packet)
    with pytest.raises(FrameSourceError, match=r"no decodable video frames in .*garbage\.mkv"):
        VideoFileSource(path)


# ----------------------------------------------------------------------------- live streams


def test_lavfi_stream_is_live() -> None:
    with StreamSource("testsrc=size=64x48:rate=25", format="lavfi") as source:
        assert (source.height, source.width, source.fps) == (48, 64, 25.0)
        assert source.num_frames is None and not source.seekable
        assert [idx for idx, _ in source.iter_frames(stop=3)] == [0, 1, 2]
        # a second iteration continues where the first stopped
        assert [idx for idx, _ in source.iter_frames(stop=5)] == [3, 4]
        with pytest.raises(ValueError, match="not available for live streams"):
            source.iter_frames(reverse=True)
        with pytest.raises(ValueError, match="not available for live streams"):
            source.iter_frames(start=2)
        with pytest.raises(FrameSourceError, match="random access is not available"):
            source.get(0)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serves an MPEG-TS file at /full.ts, and at /drop.ts cuts the connection half-way."""
    path = tmp_path_factory.mktemp("http") / "clip.ts"
    write_video(path, synthetic_frames(30), fps=25)
    data = path.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data if self.path == "/full.ts" else data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_http_stream(http_server: str, caplog: pytest.LogCaptureFixture) -> None:
    with open_source(f"{http_server}/full.ts") as source:
        assert isinstance(source, StreamSource) and source.num_frames is None
        assert [idx for idx, _ in source] == list(range(30))
    with caplog.at_level(logging.WARNING), open_source(f"{http_server}/drop.ts") as source:
        frames = [frame for _, frame in source]
    assert 0 < len(frames) < 30  # the frames before the drop are kept, no exception
    assert all(frame.shape == (48, 64, 3) for frame in frames)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and f"ended after {len(frames)} frames" in warnings[0], warnings


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("rtsp://user:secret@127.0.0.1:1/live", r"cannot open stream rtsp://\*\*\*@127.0.0.1:1"),
        ("http://127.0.0.1:1/clip.mp4", "cannot open stream http://127.0.0.1:1/clip.mp4"),
        ("/dev/video99", "cannot open stream /dev/video99"),
    ],
)
def test_stream_cannot_open(spec: str, message: str) -> None:
    with pytest.raises(FrameSourceError, match=message) as error:
        StreamSource(spec, timeout=5.0)
    assert "secret" not in str(error.value)
