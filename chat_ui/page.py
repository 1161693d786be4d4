"""The page the browser loads makes no request off this machine.

Chainlit's ``index.html`` links Google Fonts (two ``preconnect`` hints and the Inter stylesheet) and
KaTeX's stylesheet from a CDN; offline they fail, and online they tell third parties who opens the
chat. The fonts are replaced through Chainlit's own theme mechanism (``public/theme.json``'s
``custom_fonts`` points at ``/public/fonts/inter.css``, Inter served from this package); what the
theme cannot reach (the preconnect hints, KaTeX, which the chat does not use: ``latex = false``) is
removed from the page by :class:`LocalPage`: every ``<link>`` to an ``http(s)://`` address.
"""

from __future__ import annotations

import gzip
import re

EXTERNAL_LINK = re.compile(rb"""<link\b[^>]*\bhref\s*=\s*["']https?://[^"']*["'][^>]*>\s*""", re.I)
"""A ``<link>`` tag that points off the machine."""


def strip_external_links(html: bytes) -> bytes:
    """``html`` without ``<link>`` tags to other hosts."""
    return EXTERNAL_LINK.sub(b"", html)


class LocalPage:
    """ASGI middleware: HTML answers lose their links to other hosts (see the module docstring)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict = {}
        body: list[bytes] = []

        async def collect(message):
            if message["type"] == "http.response.start":
                headers = dict((k.lower(), v) for k, v in message.get("headers") or [])
                if not headers.get(b"content-type", b"").startswith(b"text/html") or \
                        headers.get(b"content-encoding", b"gzip") != b"gzip":
                    start["pass"] = True
                    await send(message)
                    return
                start.update(message)
                return
            if start.get("pass"):
                await send(message)
                return
            body.append(message.get("body", b""))
            if not message.get("more_body"):
                page = b"".join(body)
                headers = start.get("headers") or []
                if any(k.lower() == b"content-encoding" for k, _ in headers):  # Chainlit's GZip middleware
                    page = gzip.decompress(page)
                page = strip_external_links(page)
                headers = [(k, v) for k, v in headers if k.lower() not in (b"content-length", b"content-encoding")]
                headers.append((b"content-length", str(len(page)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, collect)
