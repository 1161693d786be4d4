"""localedit's agent, in three layers (each imports only the ones below it; tests/test_layout.py):

- ``agent.language``: one message -> an edit plan, a command, a question or chat (parser, LLM);
- ``agent.conversation``: the LangGraph graph, its nodes and the one pipeline from plan to pixels;
- ``agent.runtime``: assembly, ``Session``, image store, locks and checkpoints;

and the surfaces on top: ``agent.cli`` (``localedit``), ``agent.chat_cli`` and ``agent.api``
(OpenAI images API, MCP).

Importing this package is cheap: nothing here imports torch or any model code.
"""
