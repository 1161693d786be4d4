"""What runs a conversation: ``assembly`` (worker, understander, store and checkpointer from one
``Settings``), ``session`` (the Python API every surface drives), ``store`` (images by content hash),
``locks`` (one turn per thread, the cancel flag), ``history`` (bounded checkpoints) and ``studio``
(the graph for LangGraph's own tooling).

Layer: on top of ``agent.conversation`` and ``agent.language``. ``store`` and ``locks`` are leaves
(they import nothing from ``agent``), so the layers below may use the store.
"""
