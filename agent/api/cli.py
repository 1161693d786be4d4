"""The ``localedit api`` and ``localedit mcp`` sub-commands.

    localedit api [--host H] [--port 8900] [--token-file F]      # OpenAI-compatible /v1/images/edits
    localedit mcp                                                # MCP over stdio
    localedit mcp --http [--host H] [--port 8901] [--token-file F]

Beyond loopback both need a token (``--token-file``, ``LOCALEDIT_WORKER_TOKEN`` or
``LOCALEDIT_WORKER_TOKEN_FILE``: the worker's rules); the port is taken before anything is printed.
"""

from __future__ import annotations

import argparse
import sys

from tools.http_guard import bind, check_bind, serve_app
from tools.worker.cli import worker_settings, worker_token


def _serving(args: argparse.Namespace, what: str):
    """``(settings, token, listening socket)`` for an HTTP service, checked before any banner."""
    settings = worker_settings(args)
    token = worker_token(settings, None, args.token_file)
    check_bind(args.host, token, what)
    return settings, token, bind(args.host, args.port)


def _conversations(settings):
    from agent.runtime.session import Conversations

    return Conversations(settings)


def cmd_api(args: argparse.Namespace) -> int:
    from agent.api.images import create_api_app

    settings, token, sock = _serving(args, "the API")
    app = create_api_app(_conversations(settings), token=token, host=args.host)
    port = sock.getsockname()[1]
    print(f"localedit API on http://{args.host}:{port}/v1 (OpenAI images.edit; token "
          f"{'required' if token else 'not required'})", file=sys.stderr, flush=True)
    serve_app(app, sock, settings.header_timeout)
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    from agent.api.mcp_server import MCP_PATH, build_server, http_app

    if not args.http:
        settings = worker_settings(args)
        build_server(_conversations(settings), allow_paths=True).run("stdio")
        return 0
    settings, token, sock = _serving(args, "MCP")
    port = sock.getsockname()[1]
    server = build_server(_conversations(settings), allow_paths=False, host=args.host, port=port)
    print(f"localedit MCP on http://{args.host}:{port}{MCP_PATH} (streamable HTTP; token "
          f"{'required' if token else 'not required'})", file=sys.stderr, flush=True)
    serve_app(http_app(server, settings, token, args.host), sock, settings.header_timeout)
    return 0


def add_cli(subparsers) -> None:
    """Add ``api`` and ``mcp`` to the ``localedit`` sub-commands."""
    for name, port, helptext, func in (
            ("api", 8900, "serve OpenAI-compatible image editing (/v1/images/edits, /v1/models)", cmd_api),
            ("mcp", 8901, "serve localedit's tools over MCP (stdio; --http: streamable HTTP)", cmd_mcp)):
        p = subparsers.add_parser(name, help=helptext)
        if name == "mcp":
            p.add_argument("--http", action="store_true", help="streamable HTTP at /mcp instead of stdio")
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other "
                       "needs a token)")
        p.add_argument("--port", type=int, default=port, help=f"port (default {port})")
        p.add_argument("--token-file", default=None, help="file whose first line is the bearer token "
                       "(default: $LOCALEDIT_WORKER_TOKEN / $LOCALEDIT_WORKER_TOKEN_FILE)")
        p.add_argument("--models", default=None, help="folder of local models (LOCALEDIT_MODELS_DIR)")
        p.add_argument("--device", default=None, help="'auto', 'cpu', 'cuda', 'cuda:1', ...")
        p.set_defaults(func=func)
