"""``localedit chat-cli``: a terminal chat driven line by line from standard input (scripts can drive it).

    localedit chat-cli [--image photo.jpg] [--thread T]
    /image PATH, /undo, /redo, /mask, /retry, /version N, /cancel, /save PATH, /details, /help, /quit

Every other line is a message for the agent (``agent.runtime.session.Session.send``). Ctrl-C stops a running
turn; at the prompt, twice, it quits. ``agent.cli`` adds the sub-command and hands in its settings.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Callable

CHAT_HELP = ("Commands: /image PATH (load a photo), /undo, /redo, /mask, /retry, /version N, /cancel, /save PATH, "
             "/details (how the last edit was made), /help, /quit. Ctrl-C stops a running edit; at the prompt, twice, it quits. "
             "Anything else is an instruction, e.g. \"turn the cat into a fox\".")


def run_chat(args: argparse.Namespace, settings: Any) -> int:
    """A terminal chat on ``settings``; reads stdin line by line, so scripts can drive it.

    ``args``: ``thread`` (resume it), ``image`` (start with it), ``debug`` (tracebacks in the log)."""
    from agent.runtime.session import Conversations
    from tools.types import LocaleditError

    if sys.stdin is None:  # started with its standard input closed (`<&-`)
        raise LocaleditError("chat-cli reads the chat from standard input, which is closed; "
                             "pipe the messages in or run it in a terminal.")
    _log_one_line(args.debug)
    session = Conversations(settings).session(args.thread)
    print(f"localedit chat (thread {session.thread_id}). {CHAT_HELP}", flush=True)
    _resumed(session)
    loaded: set[Path] = set()  # the photos this chat loaded: /save never overwrites one
    if args.image:
        _load(session, args.image, loaded)
    interactive = sys.stdin.isatty()
    _ctrl_c_interrupts()
    interrupted = False  # Ctrl-C at the prompt once: say how to leave; twice in a row: leave
    try:
        while True:
            try:
                if _chat_line(session, interactive, loaded):
                    return 0
                interrupted = False
            except KeyboardInterrupt:  # between turns (a turn catches its own Ctrl-C: it stops the turn)
                if interrupted:
                    return _bye()
                interrupted = True
                print("\nlocaledit: (Ctrl-C again, or /quit, to leave)", flush=True)
    except KeyboardInterrupt:  # the second Ctrl-C landed while the first was being answered, or between
        return _bye()          # two statements of the loop: it still means leave (it exited 130 in 1 of 3)


def _ctrl_c_interrupts() -> None:
    """Ctrl-C (SIGINT) raises ``KeyboardInterrupt`` at the prompt, as ``/help`` says, however chat-cli was
    started: a shell without job control starts a background command (``localedit chat-cli ... &``, a
    CI script) with SIGINT ignored, and Python keeps an ignored SIGINT ignored, so a script's Ctrl-C
    did nothing at the prompt."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


def _bye() -> int:
    """Leave the chat after a second Ctrl-C: a third one meanwhile is ignored, so the exit is always 0."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    print("\nlocaledit: bye", flush=True)
    return 0


def _say(text: str) -> None:
    """One ``localedit:`` line of the chat, without terminal escapes (it may quote what the user typed)."""
    from agent.language.plan import strip_controls

    print(f"localedit: {strip_controls(text)}", flush=True)


def _resumed(session) -> None:
    """On ``--thread T`` with history: which version is on screen, and the question still open."""
    versions = session.versions()
    shown = next((v for v in versions if v["current"]), None)
    if shown is not None:
        _say(f"(resumed: version {shown['number']} of {len(versions)} is on screen)\n  [current] {shown['path']}")
    question = session.pending()
    if question:
        options = ", ".join(question.get("options") or [])
        _say(f"(still open: {question.get('question', '')}{f' Answer with {options}, or cancel.' if options else ''})")


class _OneLineFormatter(logging.Formatter):
    """A log record as ``level: message``, without its traceback (the reply already says what failed)."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _log_one_line(debug: bool) -> None:
    """Warnings and errors on stderr, one line each; their tracebacks only with ``--debug``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)  # info records (a model load's line: tools.quiet) are not errors
    if not debug:
        handler.setFormatter(_OneLineFormatter())
    logging.getLogger().addHandler(handler)


def _chat_line(session, interactive: bool, loaded: set[Path]) -> bool:
    """Read and handle one line of the chat; True when the chat should end."""
    if interactive:
        print("> ", end="", flush=True)
    line = sys.stdin.readline()
    if not line:
        if interactive:  # Ctrl-D at the prompt: end its line, as a shell does
            print(flush=True)
        return True
    line = line.strip()
    if not line:
        return False
    word, _, rest = line.partition(" ")
    if word in ("/quit", "/exit"):
        return True
    if word == "/help":
        print(CHAT_HELP)
    elif word == "/details":
        _details(_LAST.get("reply"))
    elif word == "/image":
        if path := _path_arg(rest):
            _load(session, path, loaded)
        else:
            _show(None)
    elif word == "/save":
        _say(_save(session, _path_arg(rest), loaded))
    else:  # instructions, answers and the slash commands the agent knows (/undo, /mask, /version 2, ...)
        _show(_turn(session, lambda: session.send(line, progress=_chat_progress)))
    return False


def _load(session, path: str, loaded: set[Path]) -> None:
    """``/image PATH`` (or ``--image``): upload the photo and show the reply; remember it if it was taken."""
    reply = _turn(session, lambda: session.send("", image=path))
    if not reply.error:
        loaded.add(Path(path).expanduser().resolve())
    _show(reply)


def _path_arg(text: str) -> str:
    """A path as typed, or as a terminal pastes a dropped file: quoted (``'my photo.png'``) or
    escaped (``my\\ photo.png``) the shell's way; a path that exists as typed is taken as it is."""
    import shlex

    text = text.strip()
    if not text or Path(text).expanduser().exists():
        return text
    try:
        words = shlex.split(text)
    except ValueError:  # an unclosed quote: not shell syntax
        return text
    return words[0] if len(words) == 1 else text


def _turn(session, send: Callable[[], Any]):
    """Run one turn; Ctrl-C meanwhile stops it (the session goes on) instead of killing the program."""
    import signal

    def stop(signum, frame) -> None:
        if session.cancel():
            print("\nlocaledit: stopping...", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, stop)
    try:
        return send()
    finally:
        signal.signal(signal.SIGINT, previous)


def _save(session, path: str, loaded: set[Path]) -> str:
    """``/save PATH``: the current image written whole to ``path``; returns the one line to show
    (an error too: the chat goes on, and an existing file is only replaced by a complete one; a
    photo in ``loaded`` is never replaced, as ``edit -o`` never replaces its input)."""
    from tools.files import check_output, image_bytes, write_all
    from tools.types import LocaleditError

    if not path:
        return "give the path to save to, e.g. /save edited.png"
    try:
        target = check_output(path, what="The path")
        where = target.resolve()
        if where in loaded:
            return f"could not save: {path!r} is a photo you loaded in this chat; save to another path."
        data = session.conversations.settings.data_dir.expanduser().resolve()
        if where.is_relative_to(data):  # the conversations' own images and database
            return f"could not save: {path!r} is inside localedit's data folder ({data}); save to another path."
        image = session.current_image()
        if image is None:
            return "there is no image to save yet; load one first: /image PATH"
        write_all({target: image_bytes(image, target)})
    except LocaleditError as err:
        return f"could not save: {err}"
    except (OSError, ValueError) as err:  # an encoder's complaint about this image and format
        return f"could not save to {path!r} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})."
    return f"saved the current image to {path}"


def _chat_progress(event: dict) -> None:
    if "step" in event:
        ahead = event.get("batch", 1) - 1  # queued attempts run in the same batched call
        print(f"\r  {event.get('editor', 'edit')}{f' + {ahead} queued' if ahead > 0 else ''}: "
              f"step {event['step']}/{event['total']}",
              end="" if event["step"] < event["total"] else "\n", file=sys.stderr, flush=True)


_LAST: dict = {}
"""The chat's last reply (``{"reply": Reply}``), for ``/details``: chat-cli runs one chat per process."""


def _show(reply) -> None:
    """A reply as the chat shows it: its sentence, the image paths, the options of a question."""
    if reply is None:
        _say("give the image's path: /image PATH")
        return
    _LAST["reply"] = reply
    if reply.notice:
        _say(f"({reply.notice})")
    _say(reply.text)
    for name, path in reply.images.items():
        print(f"  [{name}] {path}")
    if reply.question and reply.options:
        print(f"  answer with {', '.join(reply.options)}, 'all', 'the left one', or 'cancel'")
    sys.stdout.flush()


def _details(reply) -> None:
    """``/details``: how the last reply came about: the objects and editor, scores, stages and attempts."""
    if reply is None:
        _say("nothing yet: send an instruction first")
        return
    _say(reply.details or "no edit details for the last reply")
    if reply.scores:
        shown = {k: v for k, v in reply.scores.items() if v is not None and k != "cache_hits"}
        print("  scores: " + ", ".join(f"{k} {v}" for k, v in shown.items()))
    report = reply.report or {}
    if report.get("ran") or report.get("skipped"):
        parts = [f"ran {', '.join(report.get('ran') or []) or 'nothing'}"]
        if report.get("skipped"):
            parts.append("skipped " + ", ".join(f"{k} ({v})" if v else k for k, v in report["skipped"].items()))
        if report.get("caches"):
            parts.append("caches " + ", ".join(f"{k} {v}" for k, v in report["caches"].items()))
        print("  stages: " + "; ".join(parts))
    if len(reply.attempts) > 1:
        for n, attempt in enumerate(reply.attempts, 1):
            verdict = "; ".join(attempt.get("problems") or []) or "good"
            moved = f": {attempt['knob']}" if attempt.get("knob") else ""
            versus = attempt.get("versus_baseline")
            against = (f" [vs baseline: CLIP direction {versus['attempt']:.2f} against {versus['baseline']:.2f}]"
                       if versus else "")
            ahead = f" [already there: {attempt['reused']}]" if attempt.get("reused") else ""
            print(f"  attempt {n}: {attempt['editor']} ({attempt['why']}{moved}): {verdict}{against}{ahead}")
    sys.stdout.flush()
