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
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Optional
from urllib.parse import urlsplit

from tools.config import Settings

LOCAL_USER = "local"
"""The user every loopback browser is signed in as."""

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


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


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` (and the rest of 127/8)."""
    host = (host or "").strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, settings: Settings) -> Optional[str]:
    """Why the chat must not listen on ``host`` with these settings (None: it may)."""
    if is_loopback(host) or password_mode(settings):
        return None
    return (f"Refusing to serve the chat on {host} without a password: set LOCALEDIT_CHAT_PASSWORD "
            f"(and LOCALEDIT_CHAT_USER, default '{settings.chat_user}'), or keep the default 127.0.0.1.")


def _host_name(host_header: str) -> str:
    """``"127.0.0.1:8000"`` -> ``"127.0.0.1"``; ``"[::1]:8000"`` -> ``"::1"``."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def origin_allowed(origin: str, host_header: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a page at ``origin`` may talk to the chat reached as ``host_header``."""
    origin = origin.rstrip("/").lower()
    if origin in {o.rstrip("/").lower() for o in extra}:
        return True
    return bool(host_header) and origin in (f"http://{host_header.lower()}", f"https://{host_header.lower()}")


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


class Guard:
    """ASGI middleware: loopback-only clients (in loopback mode) and same-origin pages.

    Args:
        app: the ASGI app to protect.
        loopback_only: refuse clients not on this machine and non-loopback ``Host`` names.
        origins: extra allowed origins (``LOCALEDIT_CHAT_ORIGINS``).
    """

    def __init__(self, app, loopback_only: bool, origins: tuple[str, ...] = ()):
        self.app, self.loopback_only, self.origins = app, loopback_only, tuple(origins)

    def refusal(self, scope) -> Optional[str]:
        """Why this request is refused, or None."""
        host = _header(scope, b"host")
        if self.loopback_only:
            client = (scope.get("client") or ("", 0))[0]
            if not is_loopback(client):
                return "This chat serves this machine only."
            if host and not is_loopback(_host_name(host)):
                return "Open the chat as http://127.0.0.1 or http://localhost."
        origin = _header(scope, b"origin")
        if origin and origin != "null" and not origin_allowed(origin, host, self.origins):
            return f"Pages from {origin} may not use this chat."
        if origin == "null":
            return "Pages without an origin may not use this chat."
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        why = self.refusal(scope)
        if why is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
        else:
            body = why.encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
