"""Understanding one message: what the person asked for, as an ``EditPlan``, a command, a question or chat.

``plan`` holds the types (the contract with the rest of the agent); ``parser`` the offline rule-based
reader (lexicons, language detection, spelling, rules, plan completion); ``commands`` the fast path;
``llm``, ``llm_client`` and ``llm_tools`` the LLM path; ``arbiter`` the parser's check of the LLM's answer;
``vision`` the photo a vision LLM sees; ``prompts`` the prompt texts (package data).

Layer: imports nothing from ``agent.conversation`` or the rest of ``agent.runtime`` (only the image
store, a leaf); ``tests/test_layout.py`` checks it.
"""
