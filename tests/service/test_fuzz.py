"""Property-based fuzzing of the service's inputs against the shared real server (uvicorn on
127.0.0.1): form fields, JSON values, file names, content types, ids, frame indices and query
parameters. Every generated request gets a 2xx or 4xx with a one-line JSON ``detail`` (never a
500, a dropped connection or a hang), and the server log stays free of tracebacks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote as url_quote

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.helpers import ServerProcess

pytestmark = pytest.mark.xdist_group("service")

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 300, 959, 960, 1e9, 1e10, -1, 2**63, 10**400]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=20))
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=24,
)
boxes = st.lists(st.lists(numbers, min_size=0, max_size=6), max_size=40)
points = st.lists(st.lists(numbers, min_size=0, max_size=3), max_size=70)
option_keys = st.sampled_from(
    ["kf_score_weight", "stable_frames_threshold", "memory_selection", "nope", ""]
)
options = st.dictionaries(option_keys, scalars, max_size=4)


def as_text(value: Any) -> str:
    """JSON text; ints too long for ``json.dumps`` (> 4300 digits) are written out by hand."""
    try:
        return json.dumps(value)
    except ValueError:
        return "1" * 5000


def deep(char: str, depth: int) -> str:
    return {"[": "[" * depth + "]" * depth, "{": '{"a": ' * depth + "1" + "}" * depth}[char]


field_text = st.one_of(
    json_values.map(as_text),
    st.text(max_size=80),
    st.builds(deep, st.sampled_from("[{"), st.integers(1, 3000)),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module")
def video_id(server: ServerProcess, clips: dict[str, Path]) -> str:
    with server.client() as client, open(clips["short"], "rb") as f:
        response = client.post("/api/videos", files={"video": ("fuzz.mp4", f, "video/mp4")})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def quote(text: str) -> str:
    """A path segment with every character the client would refuse percent-encoded."""
    return url_quote(text, safe="")


def check(response: httpx.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400:
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and len(detail) <= 300, detail


def log_is_clean(server: ServerProcess, offset: int) -> None:
    with open(server.log, "rb") as f:
        f.seek(offset)
        log = f.read().decode(errors="replace")
    for marker in ("Traceback", "Exception in ASGI application", "RecursionError"):
        assert marker not in log, log[-3000:]


def test_fuzz_job_form_fields(server: ServerProcess, video_id: str) -> None:
    form = st.fixed_dictionaries(
        {},
        optional={
            "boxes": st.one_of(boxes.map(as_text), field_text),
            "points": st.one_of(points.map(as_text), field_text),
            "labels": st.one_of(st.lists(scalars, max_size=5).map(as_text), field_text),
            "options": st.one_of(options.map(as_text), field_text),
            "outputs": st.one_of(
                st.lists(st.sampled_from(["overlay", "boxes", "gif", ""]), max_size=4).map(
                    ",".join
                ),
                field_text,
            ),
            "max_frames": st.one_of(st.integers(-5, 10**12).map(str), st.text(max_size=30)),
            "samurai_mode": st.one_of(st.sampled_from(["true", "false", "0", ""]), st.text()),
            "model": st.one_of(
                st.sampled_from(["sam2.1_hiera_t", "tiny", "sam2_hiera_l"]), st.text()
            ),
            "video_id": st.one_of(st.just(video_id), st.text(max_size=40)),
            "path": st.one_of(st.sampled_from(["bedroom4.mp4", "../x", "/etc/passwd"]), st.text()),
        },
    )

    offset = server.log.stat().st_size
    with server.client() as client:

        @FUZZ
        @given(fields=form)
        def run(fields: dict[str, str]) -> None:
            fields = {k: v.replace("\x00", "") for k, v in fields.items()}
            response = client.post("/api/jobs", data=fields)
            check(response)
            if response.status_code == 201:  # a valid job: do not let it run
                assert client.delete(f"/api/jobs/{response.json()['id']}").status_code == 200

        run()
    log_is_clean(server, offset)


def test_fuzz_uploads_ids_and_queries(
    server: ServerProcess, clips: dict[str, Path], video_id: str
) -> None:
    clip = clips["short"].read_bytes()
    names = st.one_of(
        st.text(min_size=0, max_size=300),
        st.sampled_from(["../../etc/passwd", "a/b.mp4", "..", ".", "x\\y.mp4", "v.MP4", "é.mkv"]),
    )
    content_types = st.one_of(
        st.sampled_from(["video/mp4", "application/octet-stream", "text/html", "", "x/y; a=b"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    )
    ids = st.one_of(
        st.just(video_id), st.text(max_size=40), st.from_regex(r"[0-9a-f]{32}", fullmatch=True)
    )
    requests = st.one_of(
        st.tuples(st.just("upload"), names, content_types, st.sampled_from([b"", b"junk", clip])),
        st.tuples(
            st.just("frame"),
            ids,
            st.one_of(st.integers(-(10**20), 10**20).map(str), st.text(max_size=20)),
        ),
        st.tuples(
            st.just("job"), ids, st.sampled_from(["", "/events", "/results/boxes", "/results/x"])
        ),
        st.tuples(
            st.just("list"), st.one_of(st.integers(-10, 10**6).map(str), st.text(max_size=10))
        ),
        st.tuples(st.just("boxes"), ids, st.one_of(st.integers().map(str), st.text(max_size=10))),
    )

    offset = server.log.stat().st_size
    with server.client() as client:

        @FUZZ
        @given(request=requests)
        def run(request: tuple[Any, ...]) -> None:
            kind = request[0]
            if kind == "upload":
                _, name, ctype, body = request
                part = (name, body, ctype) if ctype else (name, body)
                response = client.post("/api/videos", files={"video": part})
                check(response)
                if response.status_code == 201:
                    client.delete(f"/api/videos/{response.json()['id']}")
            elif kind == "frame":
                check(client.get(f"/api/videos/{quote(request[1])}/frames/{quote(request[2])}"))
            elif kind == "job":
                check(client.get(f"/api/jobs/{quote(request[1])}{request[2]}", timeout=10))
            elif kind == "list":
                check(client.get("/api/jobs", params={"limit": request[1]}))
            else:
                url = f"/api/jobs/{quote(request[1])}/results/boxes"
                check(client.get(url, params={"obj_id": request[2]}))

        run()
    log_is_clean(server, offset)


def test_fuzz_headers(server: ServerProcess) -> None:
    """Host, Origin, Authorization, Cookie, Sec-Fetch-Site and Content-Type of any shape."""
    printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
    headers = st.fixed_dictionaries(
        {},
        optional={
            "Host": st.one_of(
                printable,
                st.sampled_from(["127.0.0.1", "[::1]:1", "localhost:", ":", "[", "a:b:c"]),
            ),
            "Origin": st.one_of(
                printable, st.sampled_from(["null", "http://[::1", "https://x:99999", server.url])
            ),
            "Authorization": st.one_of(printable, st.just("Bearer "), st.just("Bearer")),
            "Cookie": st.one_of(printable, st.just("samurai_token=%ZZ; samurai_token=")),
            "Sec-Fetch-Site": st.sampled_from(["cross-site", "same-origin", "none", ""]),
            "Content-Type": st.one_of(
                printable,
                st.sampled_from(["multipart/form-data", "multipart/form-data; boundary="]),
            ),
        },
    )
    methods = st.sampled_from(["GET", "POST", "DELETE", "OPTIONS", "PUT", "PATCH"])
    paths = st.sampled_from(["/", "/healthz", "/api/jobs", "/api/videos", "/api/jobs/x", "/docs"])
    offset = server.log.stat().st_size
    with httpx.Client(base_url=server.url, timeout=30) as client:

        @FUZZ
        @given(method=methods, path=paths, extra=headers, body=st.binary(max_size=200))
        def run(method: str, path: str, extra: dict[str, str], body: bytes) -> None:
            content = body if method in ("POST", "PUT", "PATCH") else None
            try:
                response = client.request(method, path, headers=extra, content=content)
            except httpx.LocalProtocolError:  # the client itself refuses to send it
                assume(False)
            assert response.status_code < 500, (response.status_code, response.text[:300])

        run()
    log_is_clean(server, offset)
