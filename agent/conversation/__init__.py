"""The conversation: one message in, one reply (or a question) out, as a LangGraph graph.

``graph`` wires the nodes; ``node_runtime`` wraps each node (one sentence per failure, Stop, time limits);
``pipeline`` is the one staged pipeline from plan to pixels (ground -> select -> segment -> edit -> score
-> judge) that ``localedit edit`` and ``localedit eval`` call too; ``judge`` the attempts and the
verdict; ``select`` which box a plan means; ``referent`` what "it" is; ``pointing`` clicks and typed
selection; ``answers`` replies to an open question; ``version_commands`` undo, redo, go to, show mask;
``state`` the checkpointed state; ``replies`` every sentence the agent says.

Layer: above ``agent.language``; uses only the image store from ``agent.runtime``.
"""
