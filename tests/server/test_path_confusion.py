"""The path that is priced is the path that is forwarded (issue: free access via `..`).

The upstream is Python's own `http.server`, which normalises dot segments
before serving a file, as the adversarial run's upstream did: before the fix,
`/free/../paid/secret.txt` matched the free prefix route and the upstream
served the priced file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.http.paths import BadPath, normalize
from gateway.regtest.processes import free_port
from tests.server.harness import InProcess, in_process, json_of, status_of

SECRET = b"priced content: only for buyers\n"


@pytest.fixture
def file_upstream(tmp_path: Path) -> Iterator[str]:
    root = tmp_path / "www"
    (root / "paid").mkdir(parents=True)
    (root / "free").mkdir()
    (root / "paid" / "secret.txt").write_bytes(SECRET)
    (root / "free" / "hello.txt").write_bytes(b"free\n")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import socket

        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)  # polling a port opened by another process
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
async def gw(tmp_path: Path, file_upstream: str) -> AsyncIterator[InProcess]:
    routes = [
        {"name": "free", "path": "^/free", "upstream": file_upstream, "price_sats": 0},
        {"name": "paid", "path": "^/paid", "upstream": file_upstream, "price_sats": 10},
        {"name": "route-a", "path": "^/ep212/premium-signal", "upstream": file_upstream,
         "price_sats": 10},
        {"name": "route-b", "path": "^/ep212/expensive-signal", "upstream": file_upstream,
         "price_sats": 250},
    ]  # fmt: skip
    async with in_process(tmp_path, routes=routes) as running:
        yield running


@pytest.mark.parametrize(
    "target",
    [
        "/free/../paid/secret.txt",
        "/free/./../paid/secret.txt",
        "/free/%2e%2e/paid/secret.txt",
        "/free/%2E%2E/paid/secret.txt",
        "/free/.%2e/paid/secret.txt",
        "/free//../paid/secret.txt",
        "/free/x/../../paid/secret.txt",
        "//paid/secret.txt",
        "/free/../paid/./secret.txt",
    ],
)
async def test_dot_segments_are_priced_as_where_they_lead(gw: InProcess, target: str) -> None:
    answer = await gw.raw(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert SECRET not in answer
    assert status_of(answer) == 402
    assert json_of(answer)["route"] == "paid"


@pytest.mark.parametrize(
    "target",
    [
        "/free/..%2Fpaid%2Fsecret.txt",
        "/free/..%2fpaid/secret.txt",
        "/free/..%5Cpaid%5Csecret.txt",
        "/free/..\\paid\\secret.txt",
        "/free/%00/../paid/secret.txt",
        "/free/%zz",
    ],
)
async def test_encoded_separators_are_refused(gw: InProcess, target: str) -> None:
    answer = await gw.raw(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert SECRET not in answer
    assert status_of(answer) == 400
    assert json_of(answer)["error"] in ("bad_path", "bad_request")


async def test_free_file_is_served(gw: InProcess) -> None:
    answer = await gw.raw(b"GET /free/./hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 200
    assert answer.endswith(b"free\n")


async def test_paid_file_is_served_after_payment_at_its_normal_path(gw: InProcess) -> None:
    bought = await gw.buy("/paid/secret.txt")
    async with gw.session.get(gw.url("/free/../paid/secret.txt"), headers=bought.auth) as r:
        assert r.status == 200
        assert await r.read() == SECRET


async def test_cheap_credential_cannot_reach_the_expensive_route(gw: InProcess) -> None:
    bought = await gw.buy("/ep212/premium-signal")  # 10 sats
    request = (
        "GET /ep212/premium-signal/../expensive-signal HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: L402 {bought.macaroon}:{bought.preimage}\r\nConnection: close\r\n\r\n"
    )
    answer = await gw.raw(request.encode())
    assert status_of(answer) == 402
    body = json_of(answer)
    assert (body["route"], body["reason"], body["price_msats"]) == (
        "route-b",
        "wrong_route",
        250_000,
    )


async def test_encoded_slash_is_not_priced_as_the_route(gw: InProcess) -> None:
    """`/ep212%2Fpremium-signal` used to be priced as route A, then 404 upstream."""
    answer = await gw.raw(
        b"GET /ep212%2Fpremium-signal HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status_of(answer) == 400
    assert gw.invoices.calls == []


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("/a/b/../c", "/a/c"),
        ("/a/./b/", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
        ("/a//b", "/a/b"),
        ("/%7Euser/%41", "/~user/A"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/", "/"),
    ],
)
def test_normal_form(raw: str, normal: str) -> None:
    assert normalize(raw).raw == normal
    assert normalize(normal).raw == normal  # idempotent


def test_decoded_form_is_what_routes_match() -> None:
    assert normalize("/caf%C3%A9/a%20b").decoded == "/café/a b"
    with pytest.raises(BadPath, match="UTF-8"):
        normalize("/%ff")
    with pytest.raises(BadPath, match="control"):
        normalize("/a%0d%0aX-Evil:%201")
