"""localedit behind the APIs other programs already call.

==================  ==================================================================
module              what it holds
==================  ==================================================================
``images``          ``localedit api``: OpenAI-compatible ``POST /v1/images/edits`` and ``GET /v1/models``
``mcp_server``      ``localedit mcp``: an MCP server (stdio or streamable HTTP) with edit / ask / undo /
                    redo / versions / mask tools
``cli``             the two sub-commands
==================  ==================================================================

Both run the chat's own pipeline through :class:`agent.runtime.session.Session` (one conversation per
OpenAI ``user`` or per MCP session), behind :class:`tools.http_guard.ServiceGuard` over HTTP.
"""
