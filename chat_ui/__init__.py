"""The Chainlit chat UI: ``localedit chat`` serves it (see ``chat_ui.launch``).

``chat_ui.app`` is the Chainlit app (callbacks only); ``chat_ui.backend`` holds what it needs
from localedit without importing Chainlit (settings panel, conversations, browser -> thread
map); ``chat_ui.render`` turns a turn's reply and state into the steps a user sees.
"""
