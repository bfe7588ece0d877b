"""PyAV frame sources: video files (seekable) and live streams (cameras, RTSP / HTTP URLs).

Decoding uses PyAV's threaded decoder, then ``frame.to_ndarray(format="yuv420p")`` and cv2's I420
to RGB conversion, about twice as fast as PyAV's own rgb24 conversion (ENVIRONMENT.md).
"""

from __future__ import annotations

import logging
import re
import sys
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from samurai.io.frames import Frame, FrameSource, FrameSourceError

logger = logging.getLogger(__name__)

# Without a keyframe index, decoding this many frames forward beats one demux pass over the file.
_FORWARD_DECODE_LIMIT = 32
# 8-bit 4:2:0 formats decoded through cv2's I420 conversion (to_ndarray rescales yuvj's range).
_I420_FORMATS = frozenset({"yuv420p", "yuvj420p"})


def _to_planes(frame: av.VideoFrame) -> NDArray[np.uint8]:
    """Compact copy of a decoded frame: I420 planes ``(3H/2, W)``, or RGB for other formats."""
    if frame.format.name in _I420_FORMATS and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cast(NDArray[np.uint8], frame.to_ndarray(format="yuv420p"))
    # odd sizes, 4:4:4, 10-bit and RGB codecs
    return cast(NDArray[np.uint8], frame.to_ndarray(format="rgb24"))


def _to_rgb(planes: NDArray[np.uint8]) -> Frame:
    """``(H, W, 3)`` uint8 RGB from `_to_planes` output, always a new array."""
    if planes.ndim == 3:
        return planes.copy()
    return np.asarray(cv2.cvtColor(planes, cv2.COLOR_YUV2RGB_I420), dtype=np.uint8)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


class _Decoder:
    """One opened container and a forward cursor over its decoded video frames."""

    def __init__(
        self,
        url: str,
        name: str,
        *,
        format: str | None = None,
        options: dict[str, str] | None = None,
        timeout: float | None = None,
        warn: bool = True,
    ) -> None:
        self.name, self.position = name, 0
        self.warn = warn
        self.error: str | None = None  # why reading stopped early, if it did
        try:
            self.container = av.open(url, format=format, options=options or {}, timeout=timeout)
        except av.error.EOFError as exc:
            raise FrameSourceError(f"no video frames in {name}: empty or truncated") from exc
        except av.error.InvalidDataError as exc:
            raise FrameSourceError(f"not a readable video: {name} ({_reason(exc)})") from exc
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise FrameSourceError(f"cannot open {name}: {_reason(exc)}") from exc
        if not self.container.streams.video:
            self.close()
            raise FrameSourceError(f"no video stream in {name}")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:
            self.close()
            raise FrameSourceError(f"unsupported video codec in {name}: no decoder available")
        self.stream.thread_type = "AUTO"
        self._frames = self._decode()

    def read(self) -> Iterator[tuple[int, av.VideoFrame]]:
        """``(frame_idx, frame)`` from the current position, counted in decoding output order."""
        for frame in self._frames:
            idx = self.position
            self.position += 1
            yield idx, frame

    def seek(self, pts: int, position: int) -> bool:
        """Jump to the keyframe with timestamp ``pts``, which is frame ``position``.

        Timestamps only locate the keyframe: frames are counted from it, because some containers
        (AVI with B-frames) give decoded frames made-up timestamps. Returns False where the first
        frame decoded at or after ``pts`` is not that keyframe.
        """
        self._frames.close()
        try:
            self.container.seek(pts, stream=self.stream, backward=True)
        except av.FFmpegError as exc:
            logger.debug("%s: seek to frame %d failed: %s", self.name, position, exc)
            return False
        frames = self._decode()
        self._frames = frames
        for frame in frames:
            if frame.pts is not None and frame.pts < pts:
                continue  # an earlier keyframe, or leading pictures of an open GOP
            if frame.pts != pts:
                return False
            self.position, self._frames = position, _prepend(frame, frames)
            return True
        return False

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> _Decoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _decode(self) -> Generator[av.VideoFrame, None, None]:
        """Decoded frames; bad packets are skipped, a read error ends the video with a warning."""
        packets = self.container.demux(self.stream)
        failures = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                # the timeout interrupts a read with "Immediate exit requested"
                timed_out = isinstance(exc, av.error.ExitError)
                self.error = "timed out waiting for data" if timed_out else _reason(exc)
                if self.warn:
                    logger.warning(
                        "%s: reading stopped after %d frames: %s",
                        self.name,
                        self.position,
                        self.error,
                    )
                return
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                failures += 1
                log = logger.warning if failures == 1 else logger.debug
                log("%s: skipping an undecodable packet: %s", self.name, _reason(exc))
                continue
            yield from frames


def _prepend(
    first: av.VideoFrame, rest: Iterator[av.VideoFrame]
) -> Generator[av.VideoFrame, None, None]:
    yield first
    yield from rest


@dataclass(frozen=True)
class _PtsIndex:
    """Presentation timestamps of a video stream in frame order, from one demux pass."""

    pts: list[int]  # ascending: frame index -> packet timestamp
    keyframes: list[int]  # frame indices of keyframes, ascending


def _scan_packets(decoder: _Decoder) -> tuple[int, _PtsIndex | None]:
    """Frame count and pts index from demuxing every packet, without decoding.

    The index is None where packets lack unique timestamps (some AVI or raw streams); random
    access then decodes forward from the first frame.
    """
    entries: list[tuple[int | None, bool]] = []
    try:
        for packet in decoder.container.demux(decoder.stream):
            if packet.size and not packet.is_discard:
                entries.append((packet.pts, packet.is_keyframe))
    except (av.FFmpegError, OSError) as exc:
        logger.warning("%s: packets unreadable after %d: %s", decoder.name, len(entries), exc)
    timestamps = {pts for pts, _ in entries if pts is not None}
    if len(timestamps) != len(entries):
        return len(entries), None
    ordered = sorted((pts, key) for pts, key in entries if pts is not None)
    pts = [p for p, _ in ordered]
    keyframes = [idx for idx, (_, key) in enumerate(ordered) if key]
    return len(entries), _PtsIndex(pts, keyframes)


class VideoFileSource(FrameSource):
    """Frames of a video file (mp4, mov, mkv, avi, webm, ...) decoded lazily with PyAV.

    Frame ``i`` is the ``i``-th frame in presentation order; ``get(i)`` equals the ``i``-th frame
    of ``iter_frames()`` exactly. The frame count and fps come from the container; where it has
    no count (mkv, webm) the packets are counted once by demuxing, without decoding.

    ``get`` seeks to the keyframe before the frame and decodes forward, keeping the decoder's
    position and an LRU of the last ``cache_size`` decoded frames (as compact I420 planes), so
    sequential or nearby access costs about one decode per frame. Forward iteration decodes
    sequentially with its own decoder; reverse iteration decodes chunks of at most
    ``reverse_chunk`` frames from the end, so memory stays bounded.
    """

    seekable = True

    def __init__(
        self, path: str | PathLike[str], *, cache_size: int = 8, reverse_chunk: int = 32
    ) -> None:
        if cache_size < 1 or reverse_chunk < 1:
            raise ValueError("cache_size and reverse_chunk must be positive")
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise FrameSourceError(f"video file not found: {self.path}")
        self._cache: OrderedDict[int, NDArray[np.uint8]] = OrderedDict()
        self._cache_size, self._reverse_chunk = cache_size, reverse_chunk
        self._index: _PtsIndex | None = None
        self._indexed = False
        self._decoder: _Decoder | None = _Decoder(self.name, self.name)
        stream = self._decoder.stream
        first = next(self._decoder.read(), None)
        if first is None:
            self.close()
            raise FrameSourceError(f"no decodable video frames in {self.path}")
        self.height, self.width = first[1].height, first[1].width
        self._remember(0, _to_planes(first[1]))
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self.num_frames = stream.frames or None
        if self.num_frames is None:
            self._load_index()

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        self._cache.clear()

    def _read(self, idx: int) -> Frame:
        planes = self._cache.get(idx)
        if planes is None:
            planes = self._decode_at(idx)
        self._cache.move_to_end(idx)
        return _to_rgb(planes)

    def _decode_at(self, idx: int) -> NDArray[np.uint8]:
        self._decoder = self._move(self._decoder or _Decoder(self.name, self.name), idx)
        for frame_idx, frame in self._decoder.read():
            if frame_idx > idx - self._cache_size:
                self._remember(frame_idx, _to_planes(frame))
            if frame_idx >= idx:
                return self._cache[idx]
        raise FrameSourceError(f"frame {idx} of {self.path} could not be decoded")

    def _iter_range(self, frames: range, reverse: bool) -> Iterator[tuple[int, Frame]]:
        if not frames:
            return
        decoder = _Decoder(self.name, self.name)
        try:
            for chunk in self._reverse_chunks(frames) if reverse else [frames]:
                decoder = self._move(decoder, chunk.start)
                decoded: list[tuple[int, NDArray[np.uint8]]] = []
                for idx, frame in decoder.read():
                    if idx >= chunk.stop:
                        break
                    if idx < chunk.start:
                        continue
                    if reverse:
                        decoded.append((idx, _to_planes(frame)))
                    else:
                        yield idx, _to_rgb(_to_planes(frame))
                for idx, planes in reversed(decoded):
                    yield idx, _to_rgb(planes)
        finally:
            decoder.close()

    def _reverse_chunks(self, frames: range) -> Iterator[range]:
        """Ranges of at most ``reverse_chunk`` frames from the end, starting at keyframes if any."""
        index = self._load_index()
        keyframes = index.keyframes if index else []
        stop = frames.stop
        while stop > frames.start:
            low = max(frames.start, stop - self._reverse_chunk)
            k = bisect_left(keyframes, low)
            start = keyframes[k] if k < len(keyframes) and keyframes[k] < stop else low
            yield range(start, stop)
            stop = start

    def _move(self, decoder: _Decoder, idx: int) -> _Decoder:
        """A decoder whose next frame is ``idx`` or earlier, seeking only where it saves work."""
        if decoder.position <= idx:
            if not self._indexed and idx - decoder.position <= _FORWARD_DECODE_LIMIT:
                return decoder
            index = self._load_index()
            if index is None:  # no timestamps: decoding forward is the only way
                return decoder
            k = bisect_right(index.keyframes, idx) - 1
            if k < 0 or index.keyframes[k] <= decoder.position:
                return decoder
        index = self._load_index()
        k = bisect_right(index.keyframes, idx) - 1 if index else -1
        if index is not None and k >= 0:
            key = index.keyframes[k]
            if decoder.seek(index.pts[key], key):
                return decoder
            logger.debug("%s: seek to frame %d missed; decoding from the start", self.name, key)
        decoder.close()
        return _Decoder(self.name, self.name)

    def _load_index(self) -> _PtsIndex | None:
        if not self._indexed:
            with _Decoder(self.name, self.name) as scanner:
                count, self._index = _scan_packets(scanner)
            self._indexed = True
            if count == 0:
                self.close()
                raise FrameSourceError(f"no video frames in {self.path}")
            if self.num_frames not in (None, count):
                logger.warning(
                    "%s: the container says %s frames but has %d packets; using %d",
                    *(self.name, self.num_frames, count, count),
                )
            self.num_frames = count
        return self._index

    def _remember(self, idx: int, planes: NDArray[np.uint8]) -> None:
        self._cache[idx] = planes
        self._cache.move_to_end(idx)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def _stream_target(spec: str | int) -> tuple[str, str | None, dict[str, str]]:
    """PyAV ``(url, format, options)`` for a camera index, a ``/dev/videoN`` device or a URL."""
    if isinstance(spec, int):
        if sys.platform.startswith("linux"):
            return f"/dev/video{spec}", "v4l2", {}
        if sys.platform == "darwin":
            return str(spec), "avfoundation", {"framerate": "30"}
        raise FrameSourceError(f"camera {spec}: indices work on Linux and macOS; pass a URL")
    if spec.startswith("/dev/video"):
        return spec, "v4l2", {}
    if spec.lower().startswith(("rtsp://", "rtsps://")):
        # UDP drops packets under load; the SDP states the stream, so a 1 s probe (not the
        # default 5 s of frames) is enough, and tracking starts 4 s sooner
        return spec, None, {"rtsp_transport": "tcp", "analyzeduration": "1000000"}
    return spec, None, {}


_ENDLESS_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtp", "udp", "srt"})


class StreamSource(FrameSource):
    """A live stream read with PyAV: camera index, ``/dev/videoN``, RTSP / HTTP URL, lavfi graph.

    Not seekable and ``num_frames`` is None. Frames are read once, in order; a second iteration
    continues where the first stopped, with continuing indices. A stream that ends (the server
    stopped, the connection dropped, nothing arrived within ``timeout``) ends the iteration with
    one logged warning; frames already yielded stay valid.
    """

    def __init__(
        self,
        spec: str | int,
        *,
        format: str | None = None,
        options: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        """Open the stream and decode its first frame (to learn the size).

        Args:
            spec: camera index, device path or URL (``rtsp://``, ``http://``, ...).
            format: PyAV input format, e.g. ``"lavfi"``; default guessed from ``spec``.
            options: demuxer options added to the defaults (RTSP over TCP).
            timeout: seconds to wait when opening and for each read.
        """
        url, default_format, defaults = _stream_target(spec)
        self._endless = (
            isinstance(spec, int)
            or url.startswith("/dev/video")
            or (url.lower().split(":", 1)[0] in _ENDLESS_SCHEMES)
        )
        # Never log a URL's user:password.
        self.name = f"camera {spec} ({url})" if isinstance(spec, int) else f"stream {spec}"
        self.name = re.sub(r"//[^/@]*@", "//***@", self.name)
        self._decoder: _Decoder | None = _Decoder(
            url,
            self.name,
            format=format or default_format,
            options={**defaults, **(options or {})},
            timeout=timeout,
            warn=False,  # the end of a live stream is reported once, by _iter_live
        )
        stream = self._decoder.stream
        first = next(self._decoder.read(), None)
        if first is None:
            self.close()
            raise FrameSourceError(f"{self.name} produced no frames")
        self._pending: av.VideoFrame | None = first[1]
        self.height, self.width = first[1].height, first[1].width
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else None
        self._next_idx = 0

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None
        self._pending = None

    def _position(self) -> int:
        return self._next_idx

    def _log_end(self) -> None:
        """One line: a warning where the stream failed or a camera / RTSP feed stopped sending
        (they have no natural end), info where a finite stream (HTTP file) ran out."""
        error = None if self._decoder is None else self._decoder.error
        why = f"read failed: {error}" if error else "the source stopped sending"
        log = logger.warning if error or self._endless else logger.info
        log("%s ended after %d frames (%s)", self.name, self._next_idx, why)

    def _iter_live(self, stop: int | None) -> Iterator[tuple[int, Frame]]:
        while stop is None or self._next_idx < stop:
            frame, self._pending = self._pending, None
            if frame is None and self._decoder is not None:
                item = next(self._decoder.read(), None)
                frame = None if item is None else item[1]
            if frame is None:
                self._log_end()
                self.close()
                return
            idx = self._next_idx
            self._next_idx += 1
            yield idx, _to_rgb(_to_planes(frame))
