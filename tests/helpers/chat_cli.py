"""``localedit chat-cli`` as the tests drive it: a subprocess fed line by line, its output read as it
comes, and waits on events (the process blocked reading its standard input) instead of fixed sleeps.
Used by ``test_chat_cli`` and ``test_failures``.
"""

from __future__ import annotations

import platform
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

EXE = Path(sys.executable).parent / "localedit"
REPLY = r"^localedit: [^(]"  # a reply line (not the offline notice, which is in brackets)
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}.get(platform.machine(), "0")  # read(2)'s number


class Chat:
    """A ``chat-cli`` process driven line by line, its output read as it comes."""

    def __init__(self, env: dict, cwd: Path, *args: str, sigint_ignored: bool = False):
        """``sigint_ignored``: start it as a shell without job control starts a background command
        (``... &`` in a script or a CI job), with SIGINT ignored."""
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        self.proc = subprocess.Popen([str(EXE), "chat-cli", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, bufsize=1,
                                     preexec_fn=ignore)
        self.out: queue.Queue = queue.Queue()
        self.err: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, "\n"), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, "\r\n"), daemon=True).start()
        self.expect(r"localedit chat \(thread")

    @staticmethod
    def _pump(stream, into: queue.Queue, ends: str) -> None:
        line = ""
        while True:
            ch = stream.read(1)
            if not ch:
                into.put(line)
                return
            line += ch
            if ch in ends:
                into.put(line)
                line = ""

    def say(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def expect(self, pattern: str, stream: str = "out", timeout: float = 300) -> str:
        source = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                line = source.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no {pattern!r} on {stream}; saw: {''.join(seen)[-2000:]}; {self.ended()}")

    def waiting_for_input(self) -> bool:
        """True while chat-cli's main thread is blocked reading its standard input: the turn is over and
        everything it printed is flushed (``/proc/PID/syscall``: ``read`` on fd 0)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/syscall").read_text().split()
        except OSError:  # the process has ended
            return False
        return len(fields) > 1 and fields[0] == READ_SYSCALL and fields[1] == "0x0"

    def at_prompt(self, timeout: float = 300) -> None:
        """Waits until chat-cli waits for its next line (or has ended); fails with its stderr otherwise."""
        deadline = time.monotonic() + timeout
        while not self.waiting_for_input() and self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"chat-cli did not come back to its prompt in {timeout} s; {self.ended()}")
            time.sleep(0.02)

    def ended(self) -> str:
        """How the process stands, for a failure message: its exit status and stderr so far."""
        return f"exit status {self.proc.poll()}; stderr: {''.join(list(self.err.queue))[-2000:]}"

    def reply(self, timeout: float = 300) -> str:
        """The next reply: its ``localedit:`` line and the indented lines printed with it (all of them:
        read once chat-cli is back at its prompt, so a loaded machine cannot split a reply)."""
        lines = [self.expect(REPLY, timeout=timeout)]
        self.at_prompt(timeout)
        while True:  # everything is in the pipe now; the reader thread only has to move it
            try:
                line = self.out.get(timeout=0.3 if self.proc.poll() is None else 1)
            except queue.Empty:
                return "".join(lines)
            if line.startswith("localedit: "):
                raise AssertionError(f"two replies at once: {''.join(lines)}{line}")
            lines.append(line)

    def ask(self, text: str, timeout: float = 300) -> str:
        self.say(text)
        return self.reply(timeout)

    def close(self) -> int:
        if self.proc.poll() is None:
            self.say("/quit")
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def chat_cli_in_process(monkeypatch, capsys, folder: Path, models_dir: Path, script: str, *args: str,
                        **env: str) -> str:
    """``localedit chat-cli`` run in this process, its stdin ``script``: in ``folder``, where the test scene
    with its cats is ``cats.png``, on the tiny models at 64 px and 2 steps, no automatic retry, both
    grounding thresholds 0 (every noisy box is a "cat"). ``env``: more ``LOCALEDIT_`` settings by name
    (``MIN_CLIP_DIR="-1"``). Returns what it printed on stdout."""
    import io

    from agent.cli import main
    from tests.conftest import scene
    from tests.helpers.scenes import CATS, SIZE

    settings = {"MODELS_DIR": str(models_dir), "MAX_SIDE": "64", "STEPS": "2", "DEVICE": "cpu",
                "DATA_DIR": str(folder / "data"), "AUTO_RETRY": "false", "BOX_THRESHOLD": "0", "TEXT_THRESHOLD": "0",
                **env}
    for name, value in settings.items():
        monkeypatch.setenv(f"LOCALEDIT_{name}", value)
    monkeypatch.chdir(folder)
    scene(SIZE, boxes=CATS).save(folder / "cats.png")
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["chat-cli", *args]) == 0
    return capsys.readouterr().out
