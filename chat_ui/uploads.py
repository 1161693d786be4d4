"""A file the user attached: checked before anything runs on it, and a trace when it is not a picture.

A text file named ``holiday.png`` must not be taken for the photo an instruction waited for: the
chat says in one sentence that it is not a picture, keeps the instruction waiting for the next
photo, and the user's message keeps a note of what was attached (the broken picture itself goes,
so there is no broken-image bubble).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from chat_ui import render
from tools.images import probe_image
from tools.types import LocaleditError


def problem(path: str, name: str) -> Optional[str]:
    """None when the file at ``path`` is a picture localedit can open (header and limits checked,
    nothing decoded); else one sentence why not, naming the file as the user knows it (``name``)."""
    label = f"'{name}'" if name else "The file you attached"
    try:
        probe_image(Path(path).read_bytes(), name=label)
    except LocaleditError as err:
        return str(err)
    except OSError:
        return f"I could not read {label}; please attach it again."
    return None


def trace(name: str, why: str) -> str:
    """The note a refused attachment leaves in the user's message (markdown)."""
    return f"*(attached {name or 'a file'}: not used, {_first_words(why)})*"


def _first_words(why: str) -> str:
    """"'x.png' is not an image localedit can read (...)." -> "not an image localedit can read"."""
    text = why.split(" (")[0].rstrip(".")
    for marker in (" is ", " has "):
        if marker in text:
            return text.split(marker, 1)[1]
    return text


async def refuse(upload: Any, message: Any, name: str, why: str) -> None:
    """The refused attachment: its element leaves the user's ``message``, and the message says what it was."""
    if upload is not None:
        await upload.remove()
    if message is not None:
        message.elements = [e for e in (message.elements or []) if e is not upload]  # update() sends them again
        note = trace(name, why)
        message.content = f"{message.content}\n\n{note}" if (message.content or "").strip() else note
        await message.update()


async def label(upload: Any, name: str) -> None:
    """The photo in the user's message gets an alt text that says what it is (kept for a reopened chat)."""
    from chat_ui.services import history  # made with the app (not for the checks above)

    upload.name = render.alt("uploaded") + (f" ({name})" if name else "")
    await upload.send(for_id=upload.for_id)  # the page shows the new name
    await history.create_element(upload)  # and so does the chat when it is reopened
