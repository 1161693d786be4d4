"""Who may use the chat, and from which pages.

* **On loopback** (``localedit chat``, the default 127.0.0.1) nobody logs in: Chainlit's header
  authentication signs every browser in as the one local user (:data:`LOCAL_USER`), whose past
  chats the sidebar lists. :class:`Guard` then refuses any client that is not on this machine and
  any ``Host`` that is not a loopback name (a DNS-rebinding page cannot borrow the session).
* **Anywhere else** (``--host 0.0.0.0``) the chat asks for ``LOCALEDIT_CHAT_USER`` /
  ``LOCALEDIT_CHAT_PASSWORD`` (Chainlit's password login, compared in constant time); without a
  password ``localedit chat`` refuses to start. Setting a password turns the login on for loopback too.
* **Origins**: a request that carries an ``Origin`` header (every websocket and cross-site fetch
  does) must come from the chat's own address (the ``Host`` it was sent to) or one of
  ``LOCALEDIT_CHAT_ORIGINS``; anything else gets 403, websocket included (Chainlit's socket.io
  server checks no origin by itself). Chainlit's ``allow_origins`` (CORS) is set to the same extras.
* **Guessing**: a client address that failed to sign in ``LOCALEDIT_CHAT_LOGIN_FAILURES`` times within
  ``LOCALEDIT_CHAT_LOGIN_WINDOW`` seconds gets 429 for its next tries (:class:`LoginThrottle`), the
  right password included, until its oldest failure ages out; a success clears its count.
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections import deque
from typing import Callable, Optional

from tools.config import Settings
from tools.http_guard import browser_refusal, is_loopback, origin_allowed  # noqa: F401 - the shared rule

LOCAL_USER = "local"
"""The user every loopback browser is signed in as."""


def password_mode(settings: Settings) -> bool:
    """Whether the chat asks for a password (one is configured)."""
    return settings.chat_password is not None and bool(settings.chat_password.get_secret_value())


def check_password(settings: Settings, username: str, password: str) -> bool:
    """The configured user name and password, compared in constant time."""
    if not password_mode(settings):
        return False
    user_ok = hmac.compare_digest((username or "").strip().encode(), settings.chat_user.encode())
    pass_ok = hmac.compare_digest((password or "").encode(), settings.chat_password.get_secret_value().encode())
    return user_ok and pass_ok


def check_listen(host: str, settings: Settings) -> Optional[str]:
    """Why the chat must not listen on ``host`` with these settings (None: it may)."""
    if is_loopback(host) or password_mode(settings):
        return None
    return (f"Refusing to serve the chat on {host} without a password: set LOCALEDIT_CHAT_PASSWORD "
            f"(and LOCALEDIT_CHAT_USER, default '{settings.chat_user}'), or keep the default 127.0.0.1.")


class LoginThrottle:
    """Failed sign-ins per client address: at most ``failures`` within ``window`` seconds.

    ``clock`` is ``time.monotonic`` unless a test passes its own. At most ``max_clients`` addresses
    are remembered (the oldest forgotten first), so a flood of addresses cannot grow it without end.
    """

    def __init__(self, failures: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        self.failures, self.window, self.clock, self.max_clients = failures, window, clock, max_clients
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        with self._lock:
            times = self._recent(client)
            if len(times) < self.failures:
                return 0.0
            return max(0.0, times[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            times = self._recent(client)
            times.append(self.clock())
            self._seen[client] = times
            while len(self._seen) > self.max_clients:
                del self._seen[next(iter(self._seen))]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        times = self._seen.pop(client, deque())  # popped and put back: the dict keeps the newest last
        now = self.clock()
        while times and times[0] + self.window <= now:
            times.popleft()
        if times:
            self._seen[client] = times
        return times


class Guard:
    """ASGI middleware: loopback-only clients (in loopback mode) and same-origin pages.

    Args:
        app: the ASGI app to protect.
        loopback_only: refuse clients not on this machine and non-loopback ``Host`` names.
        origins: extra allowed origins (``LOCALEDIT_CHAT_ORIGINS``).
        throttle: counts the failed ``POST /login`` of each client address (None: no limit).
    """

    def __init__(self, app, loopback_only: bool, origins: tuple[str, ...] = (),
                 throttle: Optional[LoginThrottle] = None):
        self.app, self.loopback_only, self.origins, self.throttle = app, loopback_only, tuple(origins), throttle

    def refusal(self, scope) -> Optional[str]:
        """Why this request is refused (:func:`tools.http_guard.browser_refusal`), or None."""
        return browser_refusal(scope, self.loopback_only, self.origins, "this chat")

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.refusal(scope)
        if why is not None and scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
        elif why is not None:
            await _answer(send, 403, why.encode())
        elif self.throttle is not None and scope["type"] == "http" and scope.get("method") == "POST" \
                and scope.get("path", "").rstrip("/").endswith("/login"):
            await self._login(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _login(self, scope, receive, send) -> None:
        """A sign-in: refused while its address is throttled; its answer (401 / 200) counted."""
        client = (scope.get("client") or ("?", 0))[0]
        wait = self.throttle.wait(client)
        if wait > 0:  # as JSON {"detail"}: the login page shows Chainlit's error details
            why = f"Too many failed sign-ins from this address: try again in {math.ceil(wait)} s."
            await _answer(send, 429, json.dumps({"detail": why}).encode(), b"application/json",
                          [(b"retry-after", str(math.ceil(wait)).encode())])
            return

        async def counted(message):
            if message["type"] == "http.response.start":
                if message["status"] == 401:
                    self.throttle.failed(client)
                elif message["status"] < 400:
                    self.throttle.succeeded(client)
            await send(message)

        await self.app(scope, receive, counted)


async def _answer(send, status: int, body: bytes, content_type: bytes = b"text/plain; charset=utf-8",
                  headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A short HTTP answer of our own (a refusal)."""
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
