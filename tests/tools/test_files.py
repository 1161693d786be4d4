"""tools.files: reading what a user names, checking and writing outputs whole, private data folders."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from tools.files import FileError, check_output, image_bytes, private_dir, private_file, read_file, write_all


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_read_file_reads_regular_files_with_a_cap(tmp_path: Path) -> None:
    p = tmp_path / "history.json"
    p.write_text('{"a": 1}')
    assert read_file(p, 100) == b'{"a": 1}'
    with pytest.raises(FileError, match="more than the 4 bytes limit"):
        read_file(p, 4)
    with pytest.raises(FileError, match="does not exist"):
        read_file(tmp_path / "nope.json", 100)
    with pytest.raises(FileError, match="a folder, not a regular file"):
        read_file(tmp_path, 100)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(FileError, match="named pipe"):
        read_file(fifo, 100)
    with pytest.raises(FileError, match="character device"):
        read_file("/dev/zero", 100)


@pytest.mark.parametrize("name,why", [
    ("missing/out.png", "does not exist"),        # a folder that is not there
    ("out", "no extension"),
    ("out.xyz", "cannot write"),
    ("folder.png", "a folder"),                   # an existing folder named like an image
    ("file.txt/out.png", "not a folder"),         # a file used as a folder
])
def test_check_output_refuses_what_cannot_be_written(tmp_path: Path, name: str, why: str) -> None:
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileError, match=why) as info:
        check_output(tmp_path / name)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_check_output_expands_home_and_refuses_read_only_folders(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert check_output("~/out.png") == tmp_path / "out.png"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only folder is writable")
        with pytest.raises(FileError, match="no permission"):
            check_output(locked / "out.png")
    finally:
        locked.chmod(0o700)


def test_write_all_is_all_or_nothing(tmp_path: Path) -> None:
    keep = tmp_path / "out.png"
    keep.write_bytes(b"the old output")
    with pytest.raises(FileError, match="nothing was written"):
        write_all({keep: b"new", tmp_path / "gone" / "mask.png": b"mask"})  # the second cannot be written
    assert keep.read_bytes() == b"the old output"  # not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temporary left behind
    write_all({keep: b"new", tmp_path / "mask.png": b"mask"})
    assert keep.read_bytes() == b"new" and (tmp_path / "mask.png").read_bytes() == b"mask"
    assert mode(tmp_path / "mask.png") == 0o666 & ~_umask()  # ordinary permissions for outputs


def test_image_bytes_follow_the_extension(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (1, 2, 3, 128))
    assert image_bytes(rgba, "a.png")[:8] == b"\x89PNG\r\n\x1a\n"
    assert image_bytes(rgba, "a.JPG")[:2] == b"\xff\xd8"  # JPEG cannot hold alpha: converted


def test_private_dir_and_file_are_owner_only(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    data = private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == 0o700 and mode(data) == 0o700
    db = private_file(data / "conversations.sqlite")
    assert mode(db) == 0o600
    loose = data / "old.sqlite"
    loose.write_bytes(b"")
    loose.chmod(0o644)
    assert mode(private_file(loose)) == 0o600  # an existing file of ours is tightened
    assert mode(tmp_path) == 0o755  # a folder that existed is left as it was


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_the_data_directory_and_conversation_database_are_owner_only(settings, registry, tmp_path, photo_path):
    """Finding 8: the conversation database was world-readable (the images were owner-only)."""
    import os

    from agent.language.llm import Understander
    from agent.runtime.session import Conversations
    from chat_ui.backend import Backend
    from tools.worker import LocalWorker

    old_umask = os.umask(0o022)  # the usual umask: files would come out 0644 without care
    data = tmp_path / "fresh" / "localedit"
    own = settings.model_copy(update={"data_dir": data})
    conv = Conversations(own, worker=LocalWorker(own, registry=registry), understander=Understander(None))
    try:
        reply = conv.session().send("", image=photo_path)
        assert not reply.error and "Got your photo" in reply.text
        created = [data, data / "images", data / "conversations.sqlite", *data.glob("conversations.sqlite-*"),
                   *(data / "images").iterdir()]
        assert len(created) >= 4
        assert {p.name: oct(mode(p)) for p in created} == {
            p.name: oct(0o700 if p.is_dir() else 0o600) for p in created}
        assert mode(tmp_path / "fresh") == 0o700  # folders it had to create above it too
        ui = tmp_path / "ui-data"
        Backend(settings.model_copy(update={"data_dir": ui}), understander=Understander(None))
        assert mode(ui) == 0o700
        from chat_ui.history import FileStore, SQLiteDataLayer  # the chat's past conversations and pictures

        files = FileStore(ui / "chat_files")
        SQLiteDataLayer(ui / "chat_threads.sqlite", files)
        picture = files.root / files.put(b"\x89PNG not really", "image/png")
        assert [oct(mode(p)) for p in (files.root, ui / "chat_threads.sqlite", picture)] == ["0o700", "0o600", "0o600"]
    finally:
        conv.close()
        os.umask(old_umask)


def test_the_session_refuses_devices_pipes_and_strips_and_carries_on(settings, registry, tmp_path, photo_path):
    """The UI's upload path (Session.send with the file Chainlit stored): each refusal is one
    sentence, and the conversation goes on with the next, good photo."""
    import io
    import struct
    import zlib

    from agent.language.llm import Understander
    from agent.runtime.session import Conversations
    from tools.worker import LocalWorker

    fifo = tmp_path / "upload.png"
    os.mkfifo(fifo)
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    strip = bytearray(buf.getvalue())
    strip[16:24] = struct.pack(">II", 1_000_000, 2)  # a 1,000,000 x 2 header: inside the pixel limit
    strip[29:33] = struct.pack(">I", zlib.crc32(bytes(strip[12:29])) & 0xFFFFFFFF)
    (tmp_path / "strip.png").write_bytes(bytes(strip))
    own = settings.model_copy(update={"data_dir": tmp_path / "data"})
    conv = Conversations(own, worker=LocalWorker(own, registry=registry), understander=Understander(None))
    try:
        chat = conv.session()
        for upload, words in (("/dev/zero", "character device"), (fifo, "named pipe"),
                              (tmp_path / "strip.png", "long side")):
            reply = chat.send("", image=upload)
            assert reply.error and words in reply.text and "\n" not in reply.text, reply.text
        assert chat.versions() == []
        assert "Got your photo" in chat.send("", image=photo_path).text and len(chat.versions()) == 1
    finally:
        conv.close()


def test_chat_pictures_carry_their_own_type(tmp_path):
    """The chat shows the store's JPEG previews as JPEG, and pixels it encodes as PNG (it once said PNG for all)."""
    from PIL import Image

    from chat_ui.history import picture_mime

    assert picture_mime(tmp_path / "before_after.jpg") == "image/jpeg"
    assert picture_mime(str(tmp_path / "version.png")) == "image/png"
    assert picture_mime(Image.new("RGB", (4, 4))) == "image/png"
    assert picture_mime(b"\x89PNG...") == "image/png"
