"""Access control: bearer token, ``Host`` allow-list, same-origin writes, CORS only when asked,
and the refusal to listen beyond loopback without a token."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from samurai.service.app import create_app
from samurai.service.schemas import ServiceSettings
from service.helpers import TOKEN, ServerProcess

pytestmark = pytest.mark.xdist_group("service")

BOX = json.dumps([[300, 100, 200, 250]])


def job_count(server: ServerProcess) -> int:
    with server.client() as client:
        return len(client.get("/api/jobs").json()["jobs"])


def test_token_required_on_the_api(server: ServerProcess, clips: dict[str, Path]) -> None:
    before = job_count(server)
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        for method, path in (("GET", "/api/jobs"), ("GET", "/api/videos"), ("GET", "/api/models")):
            response = anonymous.request(method, path)
            assert response.status_code == 401, response.text
            assert "token" in response.json()["detail"]
            assert response.headers["www-authenticate"].startswith("Bearer")
        upload = anonymous.post(
            "/api/jobs",
            files={"video": ("a.mp4", clips["short"].read_bytes(), "video/mp4")},
            data={"boxes": BOX},
        )
        assert upload.status_code == 401
        wrong = anonymous.get("/api/jobs", headers={"Authorization": "Bearer " + "x" * 26})
        assert wrong.status_code == 401
        by_cookie = anonymous.get("/api/jobs", headers={"Cookie": f"samurai_token={TOKEN}"})
        assert by_cookie.status_code == 200
        # the page, its files, the docs and the health check stay open
        for path in ("/", "/static/app.js", "/openapi.json", "/healthz"):
            assert anonymous.get(path).status_code == 200, path
    assert job_count(server) == before


def test_cross_origin_writes_and_foreign_hosts_refused(
    server: ServerProcess, clips: dict[str, Path]
) -> None:
    before = job_count(server)
    files = {"video": ("a.mp4", clips["short"].read_bytes(), "video/mp4")}
    with server.client() as client:
        evil = client.post(
            "/api/jobs", files=files, data={"boxes": BOX}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403 and "cross-origin" in evil.json()["detail"]
        port_scan = client.delete("/api/jobs/" + "0" * 32, headers={"Origin": "http://127.0.0.1:1"})
        assert port_scan.status_code == 403
        blind = client.post("/api/videos", files=files, headers={"Sec-Fetch-Site": "cross-site"})
        assert blind.status_code == 403
        preflight = client.options(
            "/api/jobs",
            headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403 and "CORS is off" in preflight.json()["detail"]
        assert "access-control-allow-origin" not in preflight.headers
        rebinding = client.get("/api/jobs", headers={"Host": "evil.example"})
        assert rebinding.status_code == 400 and "Host" in rebinding.json()["detail"]
        assert client.get("/", headers={"Host": "evil.example:8000"}).status_code == 400
        same = client.post(
            "/api/jobs",
            files=files,
            data={"boxes": "[[1, 2]]"},
            headers={"Origin": server.url, "Host": f"localhost:{server.port}"},
        )
        assert same.status_code == 403  # Origin 127.0.0.1 is not the origin named by Host
        same = client.post(
            "/api/jobs", files=files, data={"boxes": "[[1, 2]]"}, headers={"Origin": server.url}
        )
        assert same.status_code == 422  # accepted as same-origin, refused for its boxes only
    assert job_count(server) == before


def serve_command(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAMURAI_HOME": str(tmp_path / "home")}
    env.pop("SAMURAI_TOKEN", None)
    command = [sys.executable, "-m", "samurai.cli", "serve", "--data-dir", str(tmp_path / "d")]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_refuses_to_listen_beyond_loopback_without_token(tmp_path: Path) -> None:
    for args in (("--host", "0.0.0.0"), ("--host", "192.0.2.7", "--port", "1")):
        result = serve_command(*args, tmp_path=tmp_path)
        assert result.returncode == 2, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "needs a token" in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    short = tmp_path / "short-token"
    short.write_text("abc\n")
    result = serve_command("--token-file", str(short), tmp_path=tmp_path)
    assert result.returncode == 2 and "at least 16 characters" in result.stderr
    result = serve_command("--token-file", str(tmp_path / "missing"), tmp_path=tmp_path)
    assert result.returncode == 2 and "--token-file" in result.stderr
    assert not (tmp_path / "d" / "jobs.db").exists()  # refused before touching anything


class AsgiClient:
    """The app in this process without its lifespan (nothing starts): the middleware and the
    static files answer these requests."""

    def __init__(self, settings: ServiceSettings, host: str) -> None:
        self.app, self.base_url = create_app(settings), f"http://{host}"

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)  # type: ignore[arg-type]
            async with httpx.AsyncClient(transport=transport, base_url=self.base_url) as client:
                return await client.request(method, url, **kwargs)

        return asyncio.run(send())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def options(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("OPTIONS", url, **kwargs)


def asgi_client(settings: ServiceSettings, host: str) -> AsgiClient:
    return AsgiClient(settings, host)


def test_cors_only_for_named_origins_and_wildcard_host_names(tmp_path: Path) -> None:
    settings = ServiceSettings(
        host="0.0.0.0",
        data_dir=tmp_path,
        token=TOKEN,
        cors_origins=("https://app.example",),
        allowed_hosts=("samurai.example",),
    )
    client = asgi_client(settings, "samurai.example")
    allowed = client.options(
        "/api/jobs",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = client.options(
        "/api/jobs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert other.status_code == 403
    assert client.get("/api/jobs").status_code == 401  # CORS does not replace the token
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/static/app.js", headers={"Host": socket.gethostname()}).is_success
    assert client.get("/static/app.js", headers={"Host": "127.0.0.1:8000"}).is_success
    open_settings = ServiceSettings(data_dir=tmp_path, allowed_hosts=("*",))
    assert asgi_client(open_settings, "anything.example").get("/static/app.js").is_success
