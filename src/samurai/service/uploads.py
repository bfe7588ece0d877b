"""Request bodies of the tracking service: streamed multipart uploads, server-side paths, and the
checks that turn a file into a video the service accepts.

Uploads are written as they arrive to a temporary file in ``<data dir>/tmp`` (never to memory
and never under the client's file name), counted against the size limit while streaming, and
only moved into ``<data dir>/videos`` once the whole request has been validated: a rejected
request leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from samurai.io.frames import IMAGE_SUFFIXES, FrameSourceError, open_source
from samurai.io.probe import probe_header, read_frame

logger = logging.getLogger(__name__)

MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
MAX_PART_HEADER_BYTES = 8 * 1024
_DRAIN_LIMIT = 64 * 1024 * 1024  # read and drop at most this much of a refused body
_SAFE_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"})


class RequestError(Exception):
    """A request the service refuses: an HTTP status and a one-line reason."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass
class UploadedFile:
    """A file part written to a temporary path.

    Attributes:
        filename: the client's file name (checked: no path separators), for display only.
        path: the temporary file.
        size: bytes received.
    """

    filename: str
    path: Path
    size: int = 0


@dataclass
class Form:
    """Parsed form: text fields and at most one uploaded file."""

    fields: dict[str, str] = field(default_factory=dict)
    file: UploadedFile | None = None

    def discard(self) -> None:
        """Remove the temporary file, if it is still there."""
        if self.file is not None:
            self.file.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class VideoMeta:
    """What the service needs to know about a video it accepted."""

    frames: int
    width: int
    height: int
    fps: float | None


def check_filename(name: str) -> str:
    """The client's file name, refused when it tries to name a path (``../x``, ``a/b``)."""
    if any(c in name for c in "/\\\x00") or name.strip() in (".", ".."):
        raise RequestError(400, f"invalid file name {name!r}: path separators and '..' are refused")
    if len(name) > 255:
        raise RequestError(400, "invalid file name: longer than 255 characters")
    return name


def stored_suffix(filename: str) -> str:
    """The suffix a stored upload gets: a known video suffix of ``filename``, else ``.video``."""
    suffix = Path(filename).suffix.lower()
    return suffix if suffix in _SAFE_SUFFIXES else ".video"


class _FormReader:
    """python-multipart callbacks collecting fields and streaming one file part to disk."""

    def __init__(self, tmp_dir: Path, max_bytes: int, file_field: str) -> None:
        self.form = Form()
        self._tmp_dir, self._max_bytes, self._file_field = tmp_dir, max_bytes, file_field
        self._header_name = self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._data = bytearray()
        self._handle: IO[bytes] | None = None
        self._skip = False

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._data = b"", "", bytearray()
        self._skip = False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header()

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self._header_name) + len(self._header_value) > MAX_PART_HEADER_BYTES:
            raise RequestError(
                400, f"a multipart part header exceeds {MAX_PART_HEADER_BYTES} bytes"
            )

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            return
        filename = options[b"filename"].decode("utf-8", "replace")
        if not filename:  # an empty file input of an HTML form: no file chosen
            self._skip = True
            return
        if self._name != self._file_field:
            expected = self._file_field
            raise RequestError(
                400, f"unexpected file field {self._name!r}; send it as {expected!r}"
            )
        if self.form.file is not None:
            raise RequestError(400, "one video per request")
        path = self._tmp_dir / f"upload-{uuid.uuid4().hex}.part"
        self.form.file = UploadedFile(check_filename(filename), path)
        self._handle = open(path, "wb")  # noqa: SIM115 - closed in on_part_end / close

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._skip:
            return
        if self._handle is not None:
            assert self.form.file is not None
            self.form.file.size += end - start
            if self.form.file.size > self._max_bytes:
                limit = self._max_bytes / 2**20
                raise RequestError(413, f"upload exceeds the maximum size of {limit:g} MB")
            self._handle.write(data[start:end])
            return
        self._data += data[start:end]
        if len(self._data) > MAX_FIELD_BYTES:
            raise RequestError(413, f"form field {self._name!r} exceeds {MAX_FIELD_BYTES} bytes")

    def on_part_end(self) -> None:
        if self._skip:
            return
        if self._handle is not None:
            self.close()
            return
        if self._name not in self.form.fields and len(self.form.fields) >= MAX_FIELDS:
            raise RequestError(400, f"more than {MAX_FIELDS} form fields")
        try:
            self.form.fields[self._name] = self._data.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, f"form field {self._name!r} is not UTF-8 text") from None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


async def _drain(chunks: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop the rest of a refused body so the client sees the error response."""
    with contextlib.suppress(Exception):
        async for chunk in chunks:
            budget -= len(chunk)
            if budget < 0:
                return


async def read_form(
    request: Request, *, tmp_dir: Path, max_bytes: int, file_field: str = "video"
) -> Form:
    """Parse a ``multipart/form-data`` (or small urlencoded) body; the file goes to ``tmp_dir``.

    Raises:
        RequestError: wrong content type (415), body or file too large (413), malformed form
            or file name (400). Nothing is left on disk then.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes + 2**20:
        if int(declared) < max_bytes + _DRAIN_LIMIT:
            await _drain(request.stream(), _DRAIN_LIMIT)
        raise RequestError(413, f"upload exceeds the maximum size of {max_bytes / 2**20:g} MB")
    if content_type == b"application/x-www-form-urlencoded":
        if declared is None or not declared.isdigit() or int(declared) > MAX_FIELD_BYTES:
            raise RequestError(413, "urlencoded forms are limited to 64 KiB; use multipart")
        form = await request.form()
        return Form({k: v for k, v in form.items() if isinstance(v, str)})
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise RequestError(415, "send the request as multipart/form-data")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    reader = _FormReader(tmp_dir, max_bytes, file_field)
    parser = MultipartParser(params[b"boundary"], _callbacks(reader))  # type: ignore[arg-type]
    chunks = request.stream()
    try:
        async for chunk in chunks:
            parser.write(chunk)
        parser.finalize()
    except RequestError:
        reader.close()
        reader.form.discard()
        await _drain(chunks, _DRAIN_LIMIT)
        raise
    except OSError as exc:  # the data folder is full or read-only: the client is not at fault
        reader.close()
        with contextlib.suppress(OSError):
            reader.form.discard()
        await _drain(chunks, _DRAIN_LIMIT)
        reason = exc.strerror or str(exc)
        raise RequestError(503, f"the server cannot store uploads right now ({reason})") from exc
    except Exception as exc:
        reader.close()
        reader.form.discard()
        raise RequestError(400, f"malformed multipart body: {exc}") from exc
    reader.close()
    return reader.form


def _callbacks(reader: _FormReader) -> dict[str, object]:
    names = (
        "part_begin", "header_field", "header_value", "header_end", "headers_finished",
        "part_data", "part_end",
    )  # fmt: skip
    return {f"on_{name}": getattr(reader, f"on_{name}") for name in names}


@dataclass(frozen=True)
class VideoLimits:
    """What the service accepts: frames per video and frame size."""

    max_frames: int
    max_width: int
    max_height: int

    def check(self, display_name: str, *, width: int, height: int, frames: int | None) -> None:
        """Raises `RequestError` 413 naming the limit a video exceeds."""
        if width > self.max_width or height > self.max_height:
            raise RequestError(
                413,
                f"{display_name} has {width}x{height} frames; this server accepts at most "
                f"{self.max_width}x{self.max_height}",
            )
        if frames is not None and frames > self.max_frames:
            raise RequestError(
                413, f"{display_name} has {frames} frames; this server accepts at most "
                f"{self.max_frames}",
            )  # fmt: skip


def probe_video(path: Path, *, display_name: str, limits: VideoLimits, upload: bool) -> VideoMeta:
    """Open ``path`` as a video and check it against the limits.

    A video file's resolution and frame count are read from its container first, and checked
    before any picture is decoded; then its first frame is decoded to prove it readable.

    Args:
        path: the file (for uploads, the temporary file).
        display_name: how error messages name it (never the temporary path).
        limits: the largest video accepted.
        upload: uploads must be video files; server-side paths may also be frame folders.

    Raises:
        RequestError: empty file (400), not a decodable video (415), too large (413).
    """
    if path.is_file() and path.stat().st_size == 0:
        raise RequestError(400, f"{display_name} is empty (0 bytes)")
    try:
        if upload or (path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES):
            header = probe_header(path)
            limits.check(display_name, width=header.width, height=header.height, frames=None)
            limits.check(display_name, width=0, height=0, frames=header.frames)
            if header.frames == 0:
                raise FrameSourceError(f"no video frames in {path}")
            # decodable? (the picture is checked against the limits too: headers can lie)
            first = read_frame(path, 0)
            height, width = first.shape[:2]
            del first
            limits.check(display_name, width=width, height=height, frames=None)
            return VideoMeta(header.frames, width, height, header.fps)
        source = open_source(path)
    except FrameSourceError as exc:
        reason = str(exc).replace(str(path), display_name)
        if display_name not in reason:
            reason = f"{display_name}: {reason}"
        raise RequestError(415, reason) from exc
    with source:
        frames = source.num_frames
        if not source.seekable or frames is None:
            raise RequestError(415, f"{display_name} is a live stream, not a video file")
        limits.check(display_name, width=source.width, height=source.height, frames=frames)
        return VideoMeta(frames, source.width, source.height, source.fps)


def resolve_allowed_path(text: str, roots: tuple[Path, ...]) -> Path:
    """A server-side ``path`` field as a real path under one of ``roots``.

    Relative paths are taken from the first root; symbolic links are followed before the
    check, so neither ``..`` nor a link can leave the roots.

    Raises:
        RequestError: server-side paths disabled or outside every root (403), missing (404).
    """
    if not roots:
        raise RequestError(
            403, "server-side paths are disabled: start the server with --allowed-root DIR"
        )
    if "\x00" in text or not text.strip():
        raise RequestError(400, "path: empty or contains a NUL character")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    real = Path(os.path.realpath(candidate))
    if not any(real.is_relative_to(os.path.realpath(root)) for root in roots):
        raise RequestError(403, f"path {text!r} is outside the allowed roots")
    if not real.exists():
        raise RequestError(404, f"path {text!r} does not exist")
    return real
