"""One guard for every HTTP surface localedit serves: the chat, the worker, the OpenAI-compatible
API and MCP over HTTP.

The rule (:func:`browser_refusal`, shared with :mod:`chat_ui.access`):

* **on loopback** a client must be on this machine and ``Host`` must be a loopback name, so a
  DNS-rebinding page (``evil.example`` resolved to 127.0.0.1) is refused even though it reaches the port;
* a request that carries a browser ``Origin`` must come from the service's own address (the
  ``Host`` it was sent to) or an allowed extra origin; ``Origin: null`` (sandboxed frames, file pages)
  is refused.

:class:`ServiceGuard` adds, for the API services (not the chat):

* **a token** everywhere but the probes when one is configured (``Authorization: Bearer``, constant time);
  beyond loopback the services refuse to start without one (:func:`check_bind`);
* **content types**: a JSON endpoint takes ``application/json`` only (415), so a cross-site "simple"
  ``text/plain`` POST, which a browser sends without asking first, never reaches it;
* **bounded counting**: requests are counted under their route, an unknown path under ``other``, so
  a flood of distinct paths cannot grow ``/status`` or memory.

And for serving: :func:`bind` opens the port before any banner (a busy or invalid port is one
sentence, :class:`~tools.types.LocaleditError`), :func:`serve_app` runs uvicorn on it with
:class:`HeaderTimeoutProtocol`, which closes a connection that has not finished its request headers
within ``header_timeout`` seconds (uvicorn itself waits for ever), and at most ``max_connections``
connections at once (503 beyond).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import socket
from collections import Counter
from typing import Callable, Iterable, Optional
from urllib.parse import urlsplit

from tools.types import LocaleditError

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_CONNECTIONS = 256
"""Connections one service keeps open at once (uvicorn answers 503 beyond)."""
OTHER = "other"
"""The counter key of every path that is not a route."""

ErrorBody = Callable[[int, str], bytes]
"""``(status, sentence) -> JSON body`` in the service's own error format."""


# --------------------------------------------------------------------------- the rule


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` (and the rest of 127/8)."""
    host = (host or "").strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str:
    """``"127.0.0.1:8000"`` -> ``"127.0.0.1"``; ``"[::1]:8000"`` -> ``"::1"``."""
    try:
        return (urlsplit(f"//{host_header}").hostname or "").lower()
    except ValueError:  # "[::1" and other broken headers
        return ""


def origin_allowed(origin: str, host_header: str, extra: Iterable[str] = ()) -> bool:
    """Whether a page at ``origin`` may talk to the service reached as ``host_header``."""
    origin = origin.rstrip("/").lower()
    if origin in {o.rstrip("/").lower() for o in extra}:
        return True
    return bool(host_header) and origin in (f"http://{host_header.lower()}", f"https://{host_header.lower()}")


def header(scope, name: bytes) -> str:
    """The first ``name`` header of an ASGI scope ("" if absent)."""
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def browser_refusal(scope, loopback_only: bool, origins: Iterable[str] = (), what: str = "this service",
                    open_as: str = "") -> Optional[str]:
    """Why a request is refused by the loopback and origin rule (module docstring), or None.

    ``what`` names the service in the sentence ("this chat"); ``open_as`` its address hint.
    """
    host = header(scope, b"host")
    if loopback_only:
        client = (scope.get("client") or ("", 0))[0]
        if not is_loopback(client):
            return f"{what[0].upper()}{what[1:]} serves this machine only."
        if host and not is_loopback(host_name(host)):
            return f"Open {what} as {open_as or 'http://127.0.0.1 or http://localhost'}."
    origin = header(scope, b"origin")
    if origin == "null":
        return f"Pages without an origin may not use {what}."
    if origin and not origin_allowed(origin, host, origins):
        return f"Pages from {origin} may not use {what}."
    return None


def authorized(auth_header: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (constant-time compare)."""
    scheme, _, given = auth_header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def media_type(scope) -> str:
    """The request's ``Content-Type`` without parameters, lower case."""
    return header(scope, b"content-type").split(";")[0].strip().lower()


def detail_body(status: int, sentence: str) -> bytes:
    """The worker's error format: ``{"detail": sentence}``."""
    return json.dumps({"detail": sentence}).encode()


class ServiceGuard:
    """ASGI middleware: the guard of an API service (module docstring).

    Args:
        app: the ASGI app to protect.
        loopback_only: the service listens on loopback: check clients and ``Host``.
        token: the bearer token every path but ``open_paths`` needs (None: no token).
        origins: extra allowed browser origins.
        routes: ``{path: content type a POST must have}`` (``application/json``, ``multipart/form-data``;
            None: any); other paths are counted as :data:`OTHER`.
        prefixes: path prefixes that are routes too (``/mcp/...``), with their content type.
        open_paths: paths that need no token (the probes).
        counter: where requests are counted by route (default: a new ``Counter``).
        error_body: the service's error JSON.
        what: the service's name in sentences.
    """

    def __init__(self, app, *, loopback_only: bool, token: Optional[str] = None, origins: Iterable[str] = (),
                 routes: Optional[dict[str, Optional[str]]] = None, prefixes: Optional[dict[str, Optional[str]]] = None,
                 open_paths: Iterable[str] = (), counter: Optional[Counter] = None,
                 error_body: ErrorBody = detail_body, what: str = "this service"):
        self.app, self.loopback_only, self.token = app, loopback_only, token
        self.origins, self.routes, self.prefixes = tuple(origins), dict(routes or {}), dict(prefixes or {})
        self.open_paths = frozenset(open_paths)
        self.counter = counter if counter is not None else Counter()
        self.error_body, self.what = error_body, what

    def route_of(self, path: str) -> tuple[str, Optional[str], bool]:
        """``(counter key, content type a POST needs, known route)`` of a path."""
        if path in self.routes:
            return path, self.routes[path], True
        for prefix, kind in self.prefixes.items():
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return prefix, kind, True
        return OTHER, None, False

    def refusal(self, scope) -> Optional[tuple[int, str, dict[str, str]]]:
        """``(status, sentence, headers)`` when the request is refused, else None."""
        why = browser_refusal(scope, self.loopback_only, self.origins, self.what)
        if why is not None:
            return 403, why, {}
        path = scope.get("path", "")
        if self.token and path not in self.open_paths \
                and not authorized(header(scope, b"authorization"), self.token):
            return 401, (f"{self.what[0].upper()}{self.what[1:]} needs a valid token: send "
                         f"'Authorization: Bearer <token>'."), {"www-authenticate": "Bearer"}
        _, kind, _ = self.route_of(path)
        if kind and scope.get("method") in ("POST", "PUT", "PATCH") and media_type(scope) != kind:
            got = media_type(scope) or "no content type"
            return 415, f"This endpoint takes {kind} bodies, not {got}.", {}
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key, _, _ = self.route_of(scope.get("path", ""))
        self.counter[key] += 1
        refused = self.refusal(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, why, extra = refused
        body = self.error_body(status, why)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *((k.encode(), v.encode()) for k, v in extra.items())]})
        await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- binding and serving


def check_bind(host: str, token: Optional[str], what: str = "the worker",
               env: str = "LOCALEDIT_WORKER_TOKEN") -> None:
    """Refuse to listen beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise LocaleditError(f"Refusing to listen on {host} without a token: pass --token-file or set {env} "
                             f"or {env}_FILE (only 127.0.0.1 / localhost may serve {what} without one).")


def check_port(port: int) -> int:
    """``port`` if it is a TCP port (1-65535; 0: any free one), else one sentence."""
    if not 0 <= int(port) < 65536:
        raise LocaleditError(f"--port {port} is not a TCP port: give a number from 1 to 65535.")
    return int(port)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or one sentence saying why not (busy, invalid, no such address)."""
    check_port(port)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise LocaleditError(f"Cannot listen on {host!r}: it is not an address of this machine ({err}).") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno in (98, 48):  # EADDRINUSE (Linux, macOS)
            raise LocaleditError(f"Port {port} on {host} is already in use; pick another with --port.") from None
        raise LocaleditError(f"Cannot listen on {host}:{port} ({err.strerror or err}).") from None
    sock.set_inheritable(True)
    return sock


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on now."""
    try:
        bind(host, port).close()
    except LocaleditError:
        return False
    return True


def header_timeout_protocol(timeout: float) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers take over ``timeout`` seconds.

    The clock starts when the connection opens, and again when data of a next request on a
    kept-alive connection arrives; it stops once the headers are complete (the body is the app's to
    time: ``upload_timeout``; an idle kept-alive connection is uvicorn's: ``timeout_keep_alive``).
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer = None

        def _waiting_for_headers(self) -> bool:
            busy = self.cycle is not None and not self.cycle.response_complete
            return self.conn.their_state is h11.IDLE and not busy

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(timeout, self._headers_late)

        def _headers_late(self) -> None:
            self._header_timer = None
            if self._waiting_for_headers() and not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def data_received(self, data: bytes) -> None:
            if self._waiting_for_headers():
                self._arm()
            super().data_received(data)
            if not self._waiting_for_headers():  # the headers are complete: the request is the app's to time
                self._disarm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutProtocol


def make_server(app, header_timeout: float, max_connections: int = MAX_CONNECTIONS, keep_alive: float = 30):
    """A ``uvicorn.Server`` for ``app`` with the header timeout and the connection limit (``run(sockets=[...])``)."""
    import uvicorn

    config = uvicorn.Config(app, log_level="warning", timeout_keep_alive=keep_alive,
                            http=header_timeout_protocol(header_timeout), limit_concurrency=max_connections)
    return uvicorn.Server(config)


def serve_app(app, sock: socket.socket, header_timeout: float, max_connections: int = MAX_CONNECTIONS) -> None:
    """Run ``app`` on the listening ``sock`` until interrupted."""
    make_server(app, header_timeout, max_connections).run(sockets=[sock])
