"""The one guard of every HTTP surface (``tools.http_guard``), attacked as the issue measured it:
a cross-site ``text/plain`` POST, a DNS-rebinding ``Host``, 3000 refused 8 KB paths, 1200
connections that never finish their headers, a busy or invalid port. Loopback only."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO
from tests.helpers.served import served
from tools.http_guard import OTHER, bind, browser_refusal, check_port
from tools.types import LocaleditError
from tools.worker.local import LocalWorker
from tools.worker.server import WorkerService, create_app

TOKEN = "guard-token-0123456789"

pytestmark = pytest.mark.server


def _worker_app(settings, **kwargs):
    service = WorkerService(settings, worker=LocalWorker(settings))  # models load on first use: never here
    return service, create_app(service, host="127.0.0.1", warm_in_background=False, **kwargs)


def test_the_rule_refuses_foreign_hosts_and_origins_and_passes_the_service_itself():
    def scope(host="127.0.0.1:8800", origin=None, client="127.0.0.1"):
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        return {"type": "http", "client": (client, 5000), "headers": headers}

    assert browser_refusal(scope(), True) is None
    assert browser_refusal(scope(origin="http://127.0.0.1:8800"), True) is None
    assert browser_refusal(scope(host="localhost:8800", origin="http://localhost:8800"), True) is None
    assert "Open" in browser_refusal(scope(host="evil.example:8800"), True)  # DNS rebinding
    assert "may not use" in browser_refusal(scope(origin="http://evil.example"), True)
    assert "without an origin" in browser_refusal(scope(origin="null"), True)
    assert "this machine only" in browser_refusal(scope(client="10.0.0.7"), True)
    assert browser_refusal(scope(host="edit.example.org", origin="https://edit.example.org", client="10.0.0.7"),
                           False) is None
    assert browser_refusal(scope(origin="https://app.example"), True, origins=("https://app.example",)) is None


def test_cross_site_posts_and_foreign_hosts_get_403_and_json_needs_json(settings):
    service, app = _worker_app(settings)
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        # the "simple" request any page can send without a preflight
        r = client.post("/caption", content=b'{"image": "x"}',
                        headers={"content-type": "text/plain", "origin": "http://evil.example"})
        assert r.status_code == 403 and "evil.example" in r.json()["detail"]
        r = client.post("/edit", content=b"{}", headers={"content-type": "text/plain"})  # no Origin: still not JSON
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
        r = client.get("/status", headers={"host": "rebind.evil.example"})
        assert r.status_code == 403 and "127.0.0.1" in r.json()["detail"]
        # the service itself: JSON from its own page or from a program passes the guard (422: an empty body)
        r = client.post("/caption", json={}, headers={"origin": url})
        assert r.status_code == 422
        assert client.get("/status").status_code == 200
    assert service.failures["403"] == 2 and service.failures["415"] == 1


def _rss_mb() -> float:
    """This process's resident memory (the server runs in it), MB."""
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024


def _pipelined(url: str, paths: list[str]) -> list[int]:
    """GET each path on one kept-alive connection, all sent at once (HTTP/1.1 pipelining); their statuses."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(b"".join(f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode() for p in paths))
        data = b""
        while data.count(b"HTTP/1.1 ") < len(paths) and (chunk := sock.recv(1 << 20)):
            data += chunk
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]  # (each body ends with no newline)


def test_3000_refused_long_paths_leave_status_and_counters_bounded(settings):
    service, app = _worker_app(settings, token=TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    with served(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        before = len(client.get("/status", headers=auth).content)
        batches = [[f"/{i:06d}" + "a" * 8192 for i in range(start, start + 500)] for start in range(0, 3500, 500)]
        assert _pipelined(url, batches[0]) == [401] * 500  # buffers at their working size (4 MB at once)
        rss = _rss_mb()
        for batch in batches[1:]:  # then 3000 more
            assert _pipelined(url, batch) == [401] * 500
        grew = _rss_mb() - rss
        status = client.get("/status", headers=auth)
        assert status.status_code == 200
        assert client.get("/status").status_code == 401  # the token is still required
    body = status.json()
    assert body["requests"][OTHER] == 3500 and set(body["requests"]) <= {"/status", "/health", OTHER}
    assert len(status.content) < before + 200  # was 24 MB
    assert body["failures"] == {"401": 3500}
    assert grew < 6, f"RSS grew {grew:.1f} MB"  # was 28 MB


def _half_open(url: str, n: int) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    conns = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
        conns.append(s)
    return conns


def _closed(s: socket.socket) -> bool:
    s.setblocking(False)
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_1200_connections_that_never_finish_their_headers_are_closed(settings):
    _, app = _worker_app(settings)
    with served(app, header_timeout=1.0) as url:
        conns = _half_open(url, 1200)
        try:
            deadline = time.monotonic() + 60
            while not all(map(_closed, conns)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert sum(map(_closed, conns)) == 1200
            assert httpx.get(url + "/health", timeout=30).status_code == 200  # and it still serves
        finally:
            for s in conns:
                s.close()


def test_a_request_that_finishes_its_headers_in_time_is_served(settings):
    _, app = _worker_app(settings)
    with served(app, header_timeout=2.0) as url:
        s = _half_open(url, 1)[0]
        s.sendall(b"1\r\n\r\n")
        s.settimeout(10)
        assert s.recv(64).startswith(b"HTTP/1.1 200")
        s.close()


def test_ports_are_checked_before_listening():
    with pytest.raises(LocaleditError, match="not a TCP port"):
        check_port(99999)
    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(LocaleditError, match="already in use"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()


@pytest.mark.parametrize("port", ["99999", "busy"])
def test_the_worker_on_a_bad_port_says_one_sentence_and_exits_2_before_its_banner(port, tiny_models_dir):
    taken = bind("127.0.0.1", 0)
    number = str(taken.getsockname()[1]) if port == "busy" else port
    env = {**os.environ, "LOCALEDIT_DEVICE": "cpu"}
    env.pop("LOCALEDIT_WORKER_TOKEN", None)
    try:
        out = subprocess.run([sys.executable, "-m", "tools.worker", "--port", number, "--models", str(tiny_models_dir)],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "localedit worker on" not in out.stderr
    assert ("not a TCP port" if port == "99999" else "already in use") in lines[0]
