"""The files a user names: read them safely, write outputs whole, keep private data private.

* :func:`read_file`: the bytes of a **regular** file, read with a byte cap. ``stat()`` alone is not
  trusted (a device or a pipe says 0 bytes and then never ends): named pipes, devices and sockets
  are refused before they are opened, and the read itself stops one byte past the cap.
* :func:`check_output`: before any work runs, an output path must name a writable folder that
  exists, a known image extension, and not a folder or a special file.
* :func:`write_all`: several outputs written all-or-nothing: each goes to a temporary file next to
  it first, and only when every one is complete are they renamed into place.
* :func:`private_dir` / :func:`private_file`: folders and files created owner-only (0700 / 0600).

Every failure raises :class:`FileError` (or the error class asked for) with one sentence.
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from pathlib import Path
from typing import Mapping, Optional, Union

from tools.types import LocaleditError

PathLike = Union[str, Path]

IMAGE_EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                    ".tif": "TIFF", ".tiff": "TIFF"}
"""The image formats localedit writes, by file extension."""

_CHUNK = 1 << 20


class FileError(LocaleditError):
    """A path the user gave cannot be read or written as asked (one sentence)."""


def human_bytes(n: int) -> str:
    """A size for people: '812 bytes', '3.4 KB', '40.0 MB'."""
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


def _kind(mode: int) -> str:
    """What a non-regular file is, for a message."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _why(err: OSError) -> str:
    return err.strerror.lower() if err.strerror else type(err).__name__


def read_file(path: PathLike, max_bytes: int, *, name: Optional[str] = None,
              error: type[LocaleditError] = FileError) -> bytes:
    """The bytes of the regular file at ``path`` (``~`` expanded), at most ``max_bytes``.

    Args:
        path: the file.
        max_bytes: the cap, enforced while reading (a file that grows past it is refused too).
        name: how messages name the file (default ``The file 'PATH'``).
        error: the exception class raised (a :class:`~tools.types.LocaleditError`).

    Raises ``error`` for a missing file, a folder, a named pipe, a device, a socket, a file over the
    cap or one that cannot be read. The file is opened non-blocking, so even a pipe swapped in after
    the check cannot hang the read.
    """
    p = Path(path).expanduser()
    name = name or f"The file {str(path)!r}"
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{name} does not exist.") from None
    except OSError as err:
        raise error(f"{name} cannot be read ({_why(err)}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{name} is {_kind(st.st_mode)}, not a regular file.")
    if st.st_size > max_bytes:
        raise error(f"{name} is {human_bytes(st.st_size)}, more than the {human_bytes(max_bytes)} limit.")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as err:
        raise error(f"{name} cannot be read ({_why(err)}).") from None
    with os.fdopen(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped between the stat and the open
            raise error(f"{name} is {_kind(os.fstat(fd).st_mode)}, not a regular file.")
        buf = bytearray()
        try:
            while chunk := f.read(min(_CHUNK, max_bytes + 1 - len(buf))):
                buf += chunk
                if len(buf) > max_bytes:
                    raise error(f"{name} is more than the {human_bytes(max_bytes)} limit.")
        except OSError as err:
            raise error(f"{name} cannot be read ({_why(err)}).") from None
    return bytes(buf)


def read_secret(path: PathLike, what: str = "token") -> str:
    """The first line of a small secret file (a token), stripped; refused when missing or empty.

    A file other users may read gets a warning on stderr: the secret is only as private as it.
    """
    import sys

    text = read_file(path, 4096, name=f"The {what} file {str(path)!r}").decode("utf-8", "replace")
    secret = text.splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise FileError(f"The {what} file {str(path)!r} is empty.")
    if stat.S_IMODE(os.stat(Path(path).expanduser()).st_mode) & 0o077:
        print(f"warning: the {what} file {str(path)!r} can be read by other users; chmod 600 it.",
              file=sys.stderr, flush=True)
    return secret


def check_output(path: PathLike, *, what: str = "The output", extensions: Mapping[str, str] = IMAGE_EXTENSIONS
                 ) -> Path:
    """``path`` (``~`` expanded) checked for writing an image, before any work is done.

    It must end in a known extension (``extensions``), its folder must exist and be writable, and
    it must not be a folder or a special file (an existing regular file may be replaced).
    Raises :class:`FileError`.
    """
    raw = str(path)
    if not raw.strip():
        raise FileError(f"{what} path is empty.")
    p = Path(raw).expanduser()
    try:
        st = os.stat(p)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as err:
        raise FileError(f"{what} {raw!r} cannot be written ({_why(err)}).") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise FileError(f"{what} {raw!r} is {_kind(st.st_mode)}; give a file name.")
    known = ", ".join(sorted(set(extensions)))
    suffix = p.suffix.lower()
    if not suffix:
        raise FileError(f"{what} {raw!r} has no extension; end it with one of {known}.")
    if suffix not in extensions:
        raise FileError(f"{what} {raw!r} ends in {p.suffix!r}, which localedit cannot write; use one of {known}.")
    folder = p.parent
    if not folder.exists():
        raise FileError(f"{what} {raw!r} cannot be written: the folder {str(folder)!r} does not exist.")
    if not folder.is_dir():
        raise FileError(f"{what} {raw!r} cannot be written: {str(folder)!r} is not a folder.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileError(f"{what} {raw!r} cannot be written: no permission to write in {str(folder)!r}.")
    if st is not None and not os.access(p, os.W_OK):
        raise FileError(f"{what} {raw!r} exists and is read-only.")
    return p


def image_bytes(image, path: PathLike) -> bytes:
    """``image`` (PIL) encoded in the format ``path``'s extension names (JPEG gets RGB)."""
    fmt = IMAGE_EXTENSIONS.get(Path(path).suffix.lower())
    if fmt is None:
        raise FileError(f"{str(path)!r} has no image extension localedit writes.")
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def write_all(files: Mapping[PathLike, bytes]) -> None:
    """Write every ``{path: bytes}`` or none of them.

    Each file is first written and flushed to a temporary file in its own folder (created with the
    usual permissions), then all are renamed over their paths. If any write fails, the temporary
    files are removed and no path was touched. Raises :class:`FileError`.
    """
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files.items():
            target = Path(path).expanduser()
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                staged.append((str(tmp), target))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as err:
                raise FileError(f"Could not write {str(path)!r} ({_why(err)}); nothing was written.") from None
        placed: list[Path] = []
        for tmp, target in staged:
            try:
                os.replace(tmp, target)
            except OSError as err:
                for done in placed:  # undo what this call created (replaced files cannot come back)
                    done.unlink(missing_ok=True)
                raise FileError(f"Could not write {str(target)!r} ({_why(err)}).") from None
            placed.append(target)
        staged.clear()
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def private_dir(path: PathLike) -> Path:
    """``path`` as a folder (``~`` expanded); every folder this call creates is owner-only (0700)."""
    p = Path(path).expanduser()
    missing = []
    q = p
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    try:
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)  # mkdir's mode is cut by the umask; make it exact
    except OSError as err:
        raise FileError(f"Cannot create the folder {str(p)!r} ({_why(err)}).") from None
    if not p.is_dir():
        raise FileError(f"{str(p)!r} is not a folder.")
    return p


def private_file(path: PathLike) -> Path:
    """``path`` as an owner-only (0600) regular file: created empty if missing, tightened if ours."""
    p = Path(path).expanduser()
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileError(f"{str(p)!r} is {_kind(st.st_mode)}, not a regular file.")
            if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as err:
        raise FileError(f"Cannot create {str(p)!r} ({_why(err)}).") from None
    return p


__all__ = ["FileError", "IMAGE_EXTENSIONS", "human_bytes", "read_file", "read_secret", "check_output", "image_bytes",
           "write_all", "private_dir", "private_file"]
