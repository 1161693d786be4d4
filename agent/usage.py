"""The command line's usage errors in one line (issue 23): argparse prints its usage block and the
error; localedit prints ``error: <what>; see `<prog> --help`.`` on stderr and exits 2 (bad input).

    parser = OneLineParser(prog="localedit")           # subparsers made from it are one-line too
    argv = join_negative_values(argv, {"--point", "--box"})   # `--point -5,-5` is a value, not an option
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Iterable, NoReturn, Sequence

EXIT_USAGE = 2
"""A usage error is bad input (the README's exit codes)."""

NEGATIVE = re.compile(r"^-\d")
"""A value that starts like a negative number (``-5,-5``, ``-3.5``): argparse takes it for an option."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit :data:`EXIT_USAGE`."""

    def error(self, message: str) -> NoReturn:
        """``error: <message>; see `<prog> --help`.``, then exit 2 (no usage block)."""
        text = " ".join(message.split()).rstrip(".").replace("argument command: invalid choice:", "unknown command")
        self.exit(EXIT_USAGE, f"error: {text}; see `{self.prog} --help`.\n")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        sys.exit(status)


def join_negative_values(argv: Sequence[str], options: Iterable[str]) -> list[str]:
    """``[..., "--point", "-5,-5"]`` -> ``[..., "--point=-5,-5"]`` for each option in ``options``, so
    a negative-looking value reaches the option (and its own one-line check) instead of argparse's
    "expected one argument"."""
    wanted = set(options)
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in wanted and i + 1 < len(args) and NEGATIVE.match(args[i + 1]):
            out.append(f"{arg}={args[i + 1]}")
            i += 2
            continue
        if arg == "--":
            out.extend(args[i:])
            break
        out.append(arg)
        i += 1
    return out


__all__ = ["OneLineParser", "join_negative_values", "EXIT_USAGE"]
