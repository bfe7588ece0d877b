"""Checkpoint registry, cache and download, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from samurai import checkpoints
from samurai.checkpoints import (
    CHECKPOINTS,
    CheckpointError,
    checkpoint_path,
    checkpoint_url,
    download,
    ensure_checkpoint,
    is_cached,
    list_models,
)
from samurai.config import VARIANTS

VARIANT = "sam2.1_hiera_t"
FILE_NAME = "sam2.1_hiera_tiny.pt"


@dataclass
class Route:
    """What the server answers for one path."""

    body: bytes = b""
    status: int = 200
    send_bytes: int | None = None
    """Bytes of the body actually sent (fewer than Content-Length simulates a dropped link)."""
    content_length: bool = True


@dataclass
class FakeServer:
    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.requests.append(self.path)
            route = server.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            self.send_response(route.status)
            if route.content_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.end_headers()
            self.wfile.write(route.body[: route.send_bytes])
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer(base_url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fake
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
def fake_checkpoint() -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(3)}}, buffer)
    return buffer.getvalue()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SAMURAI_CHECKPOINT_BASE_URL", raising=False)
    for name in ("no_proxy", "NO_PROXY"):  # a proxy from the environment must not see 127.0.0.1
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    return tmp_path / "home"


@pytest.fixture
def mirror(
    server: FakeServer, fake_checkpoint: bytes, home: Path, monkeypatch: pytest.MonkeyPatch
) -> FakeServer:
    """The server serves the fake file as the tiny SAM 2.1 checkpoint, registry patched to it."""
    server.routes[f"/mirror/{FILE_NAME}"] = Route(body=fake_checkpoint)
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"{server.base_url}/mirror/")
    _patch_spec(monkeypatch, size=len(fake_checkpoint), sha256=_sha256(fake_checkpoint))
    return server


def _patch_spec(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    monkeypatch.setitem(CHECKPOINTS, VARIANT, replace(CHECKPOINTS[VARIANT], **changes))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache_files(home: Path) -> list[str]:
    folder = home / "checkpoints"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_one_line_with_hint(error: CheckpointError) -> None:
    message = str(error)
    assert "\n" not in message
    assert "--checkpoint PATH" in message


# --- registry -------------------------------------------------------------------------------


def test_registry_covers_every_variant_with_official_urls() -> None:
    assert list(CHECKPOINTS) == list(VARIANTS)
    for key, spec in CHECKPOINTS.items():
        assert spec.variant == key
        folder = "092824" if key.startswith("sam2.1") else "072824"
        assert spec.url == (
            f"https://dl.fbaipublicfiles.com/segment_anything_2/{folder}/{spec.file_name}"
        )
        size = {"_t": "tiny", "_s": "small", "b+": "base_plus", "_l": "large"}[key[-2:]]
        assert spec.file_name == f"{key.split('_')[0]}_hiera_{size}.pt"
        assert spec.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", spec.sha256)
        assert spec.size is None or 100_000_000 < spec.size < 1_000_000_000


def test_paths_and_urls_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAMURAI_HOME", raising=False)
    monkeypatch.delenv("SAMURAI_CHECKPOINT_BASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = tmp_path / ".cache" / "samurai" / "checkpoints" / "sam2.1_hiera_t.pt"
    assert checkpoint_path("sam2.1_hiera_tiny") == expected
    assert checkpoint_url("sam2_hiera_b+") == CHECKPOINTS["sam2_hiera_b+"].url

    monkeypatch.setenv("SAMURAI_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", "http://mirror.local/sam/")
    assert checkpoint_path("sam2_hiera_l") == tmp_path / "elsewhere/checkpoints/sam2_hiera_l.pt"
    assert checkpoint_url("sam2_hiera_l") == "http://mirror.local/sam/sam2_hiera_large.pt"


def test_unknown_variant_is_a_value_error(home: Path) -> None:
    with pytest.raises(ValueError, match="unknown model variant"):
        ensure_checkpoint("sam3_hiera_t")


def test_list_models_reports_cache_state(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = list_models()
    assert [m.variant for m in models] == list(VARIANTS)
    assert not any(m.cached for m in models)
    _patch_spec(monkeypatch, size=16)
    target = checkpoint_path(VARIANT)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\0" * 15)
    assert not is_cached(VARIANT)  # a file of the wrong size is not a cache hit
    target.write_bytes(b"\0" * 16)
    assert {m.variant for m in list_models() if m.cached} == {VARIANT}


# --- download -------------------------------------------------------------------------------


def test_download_caches_and_is_reused(mirror: FakeServer, home: Path) -> None:
    path = ensure_checkpoint("sam2.1_hiera_tiny", progress=False)
    assert path == home / "checkpoints" / "sam2.1_hiera_t.pt"
    assert _cache_files(home) == ["sam2.1_hiera_t.pt"]
    assert torch.load(path, weights_only=True)["model"]["w"].shape == (3,)
    assert is_cached(VARIANT)
    assert mirror.requests == [f"/mirror/{FILE_NAME}"]

    assert ensure_checkpoint(VARIANT, progress=False) == path
    assert len(mirror.requests) == 1


def test_explicit_url_and_unknown_hash(
    server: FakeServer, fake_checkpoint: bytes, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.routes["/any/name.pt"] = Route(body=fake_checkpoint, content_length=False)
    _patch_spec(monkeypatch, size=None, sha256=None)
    path = download(VARIANT, url=f"{server.base_url}/any/name.pt", progress=False)
    assert path.read_bytes() == fake_checkpoint


def test_checksum_mismatch_leaves_no_file(
    mirror: FakeServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_spec(monkeypatch, sha256="0" * 64)
    with pytest.raises(CheckpointError, match="checksum mismatch") as info:
        ensure_checkpoint(VARIANT, progress=False)
    _assert_one_line_with_hint(info.value)
    assert _cache_files(home) == []


def test_truncated_transfer_leaves_no_file(mirror: FakeServer, home: Path) -> None:
    route = mirror.routes[f"/mirror/{FILE_NAME}"]
    route.send_bytes = len(route.body) // 2
    with pytest.raises(CheckpointError, match="truncated") as info:
        download(VARIANT, progress=False)
    _assert_one_line_with_hint(info.value)
    assert _cache_files(home) == []


def test_size_announced_by_server_differs(
    mirror: FakeServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _patch_spec(monkeypatch, size=123_456)
    with pytest.raises(CheckpointError, match="size mismatch") as info:
        download(VARIANT, progress=False)
    _assert_one_line_with_hint(info.value)
    assert _cache_files(home) == []


def test_short_body_without_content_length(mirror: FakeServer, home: Path) -> None:
    route = mirror.routes[f"/mirror/{FILE_NAME}"]
    route.content_length = False
    route.send_bytes = 10
    with pytest.raises(CheckpointError, match=r"size mismatch \(got 10 bytes"):
        download(VARIANT, progress=False)
    assert _cache_files(home) == []


def test_http_404(mirror: FakeServer, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"{mirror.base_url}/missing")
    with pytest.raises(CheckpointError, match="HTTP 404") as info:
        ensure_checkpoint(VARIANT, progress=False)
    _assert_one_line_with_hint(info.value)
    assert _cache_files(home) == []


def test_server_down(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"http://127.0.0.1:{_free_port()}")
    with pytest.raises(CheckpointError, match="network unreachable") as info:
        ensure_checkpoint(VARIANT, progress=False)
    _assert_one_line_with_hint(info.value)
    assert "connection refused" in str(info.value)
    assert _cache_files(home) == []


def test_server_that_never_answers_times_out(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        monkeypatch.setenv("SAMURAI_CHECKPOINT_BASE_URL", f"http://127.0.0.1:{port}")
        with pytest.raises(CheckpointError, match=r"no answer within 0\.2 s") as info:
            download(VARIANT, progress=False, timeout=0.2)
    _assert_one_line_with_hint(info.value)
    assert _cache_files(home) == []


def test_failed_download_keeps_previous_cache_entry(
    mirror: FakeServer, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = ensure_checkpoint(VARIANT, progress=False).read_bytes()
    _patch_spec(monkeypatch, sha256="f" * 64)
    with pytest.raises(CheckpointError):
        download(VARIANT, progress=False)
    assert checkpoint_path(VARIANT).read_bytes() == good
    assert _cache_files(home) == ["sam2.1_hiera_t.pt"]


# --- explicit path and offline --------------------------------------------------------------


def test_explicit_checkpoint_is_used_without_network(tmp_path: Path, home: Path) -> None:
    local = tmp_path / "finetuned.pt"
    local.write_bytes(b"weights")
    assert ensure_checkpoint(VARIANT, local) == local


def test_explicit_checkpoint_must_exist(tmp_path: Path, home: Path) -> None:
    missing = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="checkpoint file not found") as info:
        ensure_checkpoint(VARIANT, missing)
    assert str(missing) in str(info.value)


def test_offline_without_cache_says_how_to_fix(home: Path) -> None:
    with pytest.raises(CheckpointError, match="not in the cache") as info:
        ensure_checkpoint(VARIANT, download_missing=False)
    _assert_one_line_with_hint(info.value)


def test_module_reads_environment_at_call_time(home: Path) -> None:
    assert checkpoints.samurai_home() == home
