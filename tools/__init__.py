"""localedit's vision tools: caption, ground, segment, edit, score, and the worker that hosts them.

Importing this package is cheap: torch, diffusers and transformers are imported only by the
modules that run models (``tools.models``, ``tools.caption``, ...), never by ``tools.types``,
``tools.config``, ``tools.images`` or ``tools.worker``'s interface.
"""
