"""`localedit edit` and `localedit models` end to end, on tiny models, through the real loaders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.cli import EXIT_INPUT, EXIT_MODEL, EXIT_NOTHING, EXIT_WORKER, main
from tests.conftest import scene


@pytest.fixture
def env(monkeypatch, tiny_models_dir, tmp_path):
    monkeypatch.setenv("LOCALEDIT_MODELS_DIR", str(tiny_models_dir))
    monkeypatch.setenv("LOCALEDIT_MAX_SIDE", "64")
    monkeypatch.setenv("LOCALEDIT_STEPS", "2")
    monkeypatch.setenv("LOCALEDIT_DEVICE", "cpu")
    monkeypatch.setenv("LOCALEDIT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    photo = tmp_path / "photo.png"
    scene((157, 101), boxes=((10, 20, 60, 80), (90, 15, 150, 90))).save(photo)
    return tmp_path


def candidate_boxes(report: dict) -> dict[int, list]:
    """The detections `agent.conversation.select` chooses among (weak and duplicate boxes set aside)."""
    from agent.conversation.select import candidates
    from tools.types import Detection

    detections = [Detection(d["label"], d["score"], tuple(d["box"])) for d in report["detections"]]
    return {i: report["detections"][i]["box"] for i in candidates(detections)}


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip().startswith("{") else None), err


def test_edit_with_a_box_keeps_everything_outside_the_mask(env, capsys):
    code, report, _ = run(capsys, "edit", "photo.png", "make it golden", "--box", "10,20,60,80",
                          "-o", "out.png", "--mask-out", "mask.png", "--overlay-out", "overlay.png")
    assert code == 0
    original = np.asarray(Image.open(env / "photo.png").convert("RGB"))
    edited = np.asarray(Image.open(env / "out.png"))
    mask = np.asarray(Image.open(env / "mask.png")) > 127
    assert edited.shape == original.shape
    assert mask.any() and report["mask"]["edit_area"] == int(mask.sum()) >= report["mask"]["area"]
    assert np.array_equal(edited[~mask], original[~mask])  # untouched background, bit for bit
    assert not mask[:, 80:].any()  # near the box: 10..60, grown 10%, dilated 4 work px (~10 px here)
    assert report["path"] == "localized" and report["editor"] == "ip2p-composite"
    assert report["box"] == [10.0, 20.0, 60.0, 80.0]
    assert set(report["timings"]) >= {"segment", "edit", "score", "total", "wall"}
    # scored on the box and the undilated SAM mask: the dilation and feather band count outside it
    assert report["scored_on"]["boxes"] == [[10.0, 20.0, 60.0, 80.0]] and report["scored_on"]["source"] == "box"
    assert report["scores"]["l1_outside"] > 0.0 and 0.0 < report["scores"]["clip_gc"] <= 100.0
    assert Image.open(env / "overlay.png").size == (157, 101)


def test_edit_grounds_the_target_and_reports_detections(env, capsys):
    code, report, _ = run(capsys, "edit", "photo.png", "turn the cat into a fox", "--target", "cat",
                          "--box-threshold", "0", "--text-threshold", "0", "--editor", "regionwise")
    assert code == 0
    assert report["detections"] and report["chosen"] == [0]
    assert report["box"] == report["detections"][0]["box"]
    assert report["editor"] == "regionwise" and report["target"] == "cat"
    assert report["attempts"][0]["editor"] == "regionwise" and report["attempts"][0]["strength"] == 1.0
    assert {"ground", "segment", "edit", "score"} <= set(report["timings"])
    assert (env / "photo-edited.png").is_file()


@pytest.mark.slow
def test_regionwise_runs_every_diffusion_step_by_default(env, capsys):
    """R-SIE runs RwDP from T (sec. 4.1, eq. 6): `--editor regionwise` starts at the schedule's first
    timestep and runs every step; the encoding ratio below 1 is a knob (`--strength`)."""
    code, report, _ = run(capsys, "edit", "photo.png", "turn the cat into a fox", "--box", "10,20,60,80",
                          "--editor", "regionwise", "--attempts", "1")
    assert code == 0 and report["editor"] == "regionwise"
    assert report["request"]["strength"] == report["info"]["strength"] == 1.0
    assert report["info"]["denoising_steps"] == report["info"]["steps"] == 2
    code, later, _ = run(capsys, "edit", "photo.png", "turn the cat into a fox", "--box", "10,20,60,80",
                         "--editor", "regionwise", "--attempts", "1", "--strength", "0.5")
    assert code == 0 and later["info"]["denoising_steps"] == 1 and later["info"]["start_timestep"] < \
        report["info"]["start_timestep"]


def test_edit_takes_the_target_from_the_instruction(env, capsys):
    code, report, _ = run(capsys, "edit", "photo.png", "turn the biggest cat into a fox",
                          "--box-threshold", "0", "--text-threshold", "0", "--no-score")
    assert code == 0
    assert report["target"] == "cat" and report["plan"]["action"] == "replace"
    area = {i: (b[2] - b[0]) * (b[3] - b[1]) for i, b in candidate_boxes(report).items()}
    assert report["chosen"] == [max(area, key=area.get)]
    assert report["request"]["target_caption"].endswith("fox")


def test_edit_with_a_mask_file_skips_grounding_and_sam(env, capsys):
    mask = np.zeros((101, 157), np.uint8)
    mask[30:70, 95:140] = 255
    Image.fromarray(mask).save(env / "region.png")
    code, report, _ = run(capsys, "edit", "photo.png", "make it blue", "--mask", "region.png",
                          "--editor", "inpaint", "-o", "out.png", "--mask-out", "edited-region.png")
    assert code == 0
    assert report["mask"]["source"] == "user" and "ground" not in report["timings"]
    assert "segment" not in report["timings"]
    region = np.asarray(Image.open(env / "edited-region.png")) > 127
    assert region[mask > 0].all()  # the user's region, grown a little for the inpainter
    assert not region[:15].any() and not region[:, :80].any()
    edited, original = np.asarray(Image.open(env / "out.png")), np.asarray(Image.open(env / "photo.png").convert("RGB"))
    assert np.array_equal(edited[~region], original[~region])


def test_global_edit_runs_plain_instructpix2pix(env, capsys):
    code, report, _ = run(capsys, "edit", "photo.png", "make it look like winter", "-o", "w.png")
    assert code == 0 and report["path"] == "global" and report["editor"] == "ip2p"
    assert Image.open(env / "w.png").size == (157, 101)


@pytest.mark.parametrize("content,what", [(b"", "empty"), (b"hello, not an image", "not an image")])
def test_bad_input_is_one_line_and_writes_nothing(env, capsys, content, what):
    (env / "bad.png").write_bytes(content)
    code, _, err = run(capsys, "edit", "bad.png", "make it red", "--box", "1,1,5,5", "-o", "out.png")
    assert code == EXIT_INPUT
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (env / "out.png").exists()


def test_nothing_found_exits_4(env, capsys):
    code, _, err = run(capsys, "edit", "photo.png", "make it red", "--target", "cat",
                       "--box-threshold", "1", "-o", "out.png")
    assert code == EXIT_NOTHING and "No 'cat' was found" in err
    assert not (env / "out.png").exists()


def test_bad_box_is_refused(env, capsys):
    code, _, err = run(capsys, "edit", "photo.png", "make it red", "--box", "50,50,10,10")
    assert code == EXIT_INPUT and err.startswith("error: ")


def test_missing_model_names_it_and_the_fix(env, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALEDIT_MODELS_DIR", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    code, _, err = run(capsys, "edit", "photo.png", "make it red", "--box", "10,20,60,80", "-o", "out.png")
    assert code == EXIT_MODEL
    assert "Segment Anything" in err and "localedit models download sam" in err
    assert "Traceback" not in err and not (env / "out.png").exists()


def test_console_script_make_tiny_and_list(tmp_path):
    exe = Path(sys.executable).parent / "localedit"
    out = subprocess.run([str(exe), "models", "make-tiny", str(tmp_path / "tiny")], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "tiny" / "ip2p" / "model_index.json").is_file()
    listed = subprocess.run([str(exe), "models", "list", "--models", str(tmp_path / "tiny")],
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0
    assert f"{tmp_path / 'tiny' / 'clip'}" in listed.stdout


@pytest.mark.server
def test_chat_cli_is_scriptable_through_stdin(env, tiny_models_dir):
    exe = Path(sys.executable).parent / "localedit"
    script = "/image photo.png\nmake it look like winter\n/save edited.png\n/undo\n/save undone.png\n/quit\n"
    out = subprocess.run([str(exe), "chat-cli"], input=script, capture_output=True, text=True, timeout=300,
                         cwd=env)
    assert out.returncode == 0, out.stderr
    assert "Got your photo" in out.stdout and "Done: make it look like winter" in out.stdout
    assert "built-in parser" in out.stdout  # the offline notice, said once
    assert out.stdout.count("built-in parser") == 1 and "Traceback" not in out.stdout + out.stderr
    original = np.asarray(Image.open(env / "photo.png").convert("RGB"))
    assert not np.array_equal(np.asarray(Image.open(env / "edited.png")), original)
    assert np.array_equal(np.asarray(Image.open(env / "undone.png")), original)  # undo restored it


def test_parse_prints_the_plan_and_resolves_follow_ups(capsys, tmp_path):
    code, plan, _ = run(capsys, "parse", "turn the second cat from the left into a fox", "--json")
    assert code == 0
    assert (plan["kind"], plan["action"], plan["target"], plan["qualifier"]) == ("edit", "replace", "cat", "2nd from left")
    assert plan["target_caption"].endswith("fox")
    history = tmp_path / "history.json"
    history.write_text(json.dumps({"last_plan": {k: v for k, v in plan.items() if k != "kind"}}))
    code, follow, _ = run(capsys, "parse", "now make it red", "--history", str(history), "--json")
    assert code == 0 and follow["action"] == "attribute" and follow["new_value"] == "red"
    assert follow["target"] == "fox" and follow["qualifier"] == "2nd from left"
    code, undo, _ = run(capsys, "parse", "go back two steps", "--json")
    assert (undo["kind"], undo["name"], undo["steps"]) == ("command", "undo", 2)


def test_edit_honours_the_instructions_qualifier(env, capsys):
    code, report, _ = run(capsys, "edit", "photo.png", "make the leftmost cat red", "--no-score",
                          "--box-threshold", "0", "--text-threshold", "0")
    assert code == 0 and len(candidate_boxes(report)) > 1
    centre = {i: (b[0] + b[2]) / 2 for i, b in candidate_boxes(report).items()}
    assert report["chosen"] == [min(centre, key=centre.get)]
    code, report, _ = run(capsys, "edit", "photo.png", "make all the cats red", "--no-score",
                          "--box-threshold", "0", "--text-threshold", "0")
    assert code == 0 and len(report["chosen"]) > 1
    boxes = [report["detections"][i]["box"] for i in report["chosen"]]
    assert report["box"] == [min(b[0] for b in boxes), min(b[1] for b in boxes),
                             max(b[2] for b in boxes), max(b[3] for b in boxes)]


def test_edit_asks_for_a_qualifier_instead_of_guessing(env, capsys):
    code, _, err = run(capsys, "edit", "photo.png", "make the cat red", "--box-threshold", "0",
                       "--text-threshold", "0", "-o", "out.png")
    assert code == EXIT_INPUT and "Which one?" in err and "--box" in err
    assert not (env / "out.png").exists()


# --------------------------------------------------------------------------- hostile input, outputs


def one_line_error(err: str, after_progress: bool = False) -> None:
    """stderr is one ``error: ...`` line (after the progress bars, when the edit ran; after our
    "  loading <role> ..." lines, one per model load: ``tools.quiet``)."""
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("  loading "))
    if after_progress:
        err = err.rstrip("\n").rsplit("\r", 1)[-1].rsplit("\n", 1)[-1] + "\n"
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("source", ["/dev/zero", "pipe.png"])
def test_devices_and_pipes_are_refused_at_once(env, capsys, source):
    """Finding 2: `localedit edit /dev/zero` grew to 7.7 GB; a named pipe hung forever."""
    import os
    import time

    if source == "pipe.png":
        os.mkfifo(env / source)
    started = time.monotonic()
    code, _, err = run(capsys, "edit", source, "make it red", "--box", "1,1,5,5", "-o", "out.png")
    assert code == EXIT_INPUT and time.monotonic() - started < 10
    one_line_error(err)
    assert ("character device" if source.startswith("/dev") else "named pipe") in err
    assert not (env / "out.png").exists()


@pytest.mark.parametrize("option,value,why", [
    ("-o", "missing/out.png", "does not exist"),
    ("-o", "out.xyz", "cannot write"),
    ("-o", "out", "no extension"),
    ("-o", ".", "folder"),
    ("--mask-out", "nowhere/mask.png", "does not exist"),
    ("--overlay-out", "overlay.gif2", "cannot write"),
    ("--mask-out", "out.png", "same file"),
    ("-o", "photo.png", "overwrite an input"),
])
def test_every_output_path_is_checked_before_any_model_runs(env, capsys, monkeypatch, tmp_path, option, value, why):
    """Finding 7: a bad -o failed only after the whole edit; a bad --mask-out left the edit written.
    With no models at all, an edit that ran would exit 3: the path is refused first (exit 2)."""
    monkeypatch.setenv("LOCALEDIT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    photo = (env / "photo.png").read_bytes()
    argv = ["edit", "photo.png", "make it golden", "--box", "10,20,60,80", "-o", "out.png", option, value]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_INPUT, err
    one_line_error(err)
    assert why in err and option in err
    assert not (env / "out.png").exists() and (env / "photo.png").read_bytes() == photo
    assert not list(env.glob("*.gif2")) and not (env / "nowhere").exists()


def test_outputs_are_written_all_or_nothing(env, capsys, monkeypatch):
    """The edit ran, then one output's folder vanished: no output is written, not even -o."""
    import shutil

    from agent.conversation import pipeline

    (env / "masks").mkdir()
    real = pipeline.run

    def edit_then_lose_the_folder(*args, **kwargs):
        report = real(*args, **kwargs)
        shutil.rmtree(env / "masks")
        return report

    monkeypatch.setattr(pipeline, "run", edit_then_lose_the_folder)
    code, _, err = run(capsys, "edit", "photo.png", "make it golden", "--box", "10,20,60,80", "-o", "out.png",
                       "--mask-out", "masks/mask.png", "--no-score")
    assert code == EXIT_INPUT and "nothing was written" in err and "Traceback" not in err
    one_line_error(err, after_progress=True)
    assert not (env / "out.png").exists() and not list(env.glob(".*.part"))


@pytest.mark.parametrize("argv,words", [
    (["edit", "photo.png", "make it red", "--max-side", "10"], "--max-side"),
    (["edit", "photo.png", "make it red", "--box", "1,1,5,5", "--steps", "0"], "steps"),
])
def test_out_of_range_options_exit_2_with_one_line(env, capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert code == EXIT_INPUT, err
    one_line_error(err)
    assert words in err


@pytest.mark.parametrize("content,words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"last_plan": "turn it red"}', "not an object"),
    ('{"last_plan": {"action": "explode", "target": "cat"}}', "invalid last_plan"),
    ('{"caption": 5}', "not text"),
    (None, "character device"),
])
def test_parse_with_a_malformed_history_exits_2_with_one_line(capsys, tmp_path, content, words):
    path = "/dev/zero"
    if content is not None:
        path = str(tmp_path / "history.json")
        Path(path).write_text(content)
    code, _, err = run(capsys, "parse", "now make it red", "--history", path)
    assert code == EXIT_INPUT, err
    one_line_error(err)
    assert words in err


@pytest.mark.server
def test_chat_cli_survives_bad_paths_and_saves_whole_files(env, tmp_path):
    """Findings 2 and 4: `/image /dev/zero` ended the session; `/save` with a bad path ended the
    chat (5 of 5). Now each is one line, the chat goes on, and `~` works."""
    import os

    exe = Path(sys.executable).parent / "localedit"
    (env / "a-folder").mkdir()
    os.mkfifo(env / "pipe.png")
    home = tmp_path / "home"
    home.mkdir()
    script = ("/image /dev/zero\n/image pipe.png\n/image photo.png\n/save missing/x.png\n/save edited.xyz\n"
              "/save edited\n/save a-folder\n/save ~/in-home.png\n/save edited.jpg\n"
              "/save \x1b[1mbold.png\n/image \x1b]0;owned\x07.png\n/quit\n")  # escapes must not reach the terminal
    out = subprocess.run([str(exe), "chat-cli"], input=script, capture_output=True, text=True, timeout=300,
                         cwd=env, env={**os.environ, "HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any("character device" in line for line in lines) and any("named pipe" in line for line in lines)
    assert "Got your photo" in out.stdout  # the session went on after both
    refusals = [line for line in lines if line.startswith("localedit: could not save")]
    assert len(refusals) == 4, lines
    assert (env / "\x1b[1mbold.png").is_file() and "\x1b" not in out.stdout and "\x07" not in out.stdout
    assert (home / "in-home.png").is_file() and (env / "edited.jpg").is_file()
    saved = np.asarray(Image.open(home / "in-home.png").convert("RGB"))
    assert np.array_equal(saved, np.asarray(Image.open(env / "photo.png").convert("RGB")))
    assert not (env / "missing").exists() and not list(env.glob(".*.part"))


@pytest.mark.parametrize("how", ["env", "option"])
def test_edit_through_a_worker_that_is_down_or_hung_is_one_sentence(env, capsys, monkeypatch, how):
    """``localedit edit`` ignored ``LOCALEDIT_WORKER_URL`` (and had no ``--worker-url``): it loaded
    every model in this process instead. A dead port is refused at once; a socket that accepts and
    never answers is cut off at the segment timeout. One line, no traceback, nothing written."""
    import time

    from tests.conftest import free_port
    from tests.helpers.hung import HungServer

    hung = HungServer()
    monkeypatch.setenv("LOCALEDIT_SEGMENT_TIMEOUT", "2")
    argv = ["edit", "photo.png", "make it golden", "--box", "10,20,60,80", "-o", "out.png"]
    try:
        for url in (f"http://127.0.0.1:{free_port()}", hung.url):
            if how == "env":
                monkeypatch.setenv("LOCALEDIT_WORKER_URL", url)
            started = time.monotonic()
            code, _, err = run(capsys, *argv, *(["--worker-url", url] if how == "option" else []))
            assert code == EXIT_WORKER and time.monotonic() - started < 30, err  # not "bad input" (2)
            one_line_error(err)
            assert f"The vision worker at {url} is not reachable right now" in err
            assert not (env / "out.png").exists() and not list(env.glob(".*.part"))
    finally:
        hung.close()


@pytest.mark.parametrize("option, says", [(("--seed", "-1"), "The seed must be"),
                                          (("--guidance", "nan"), "The guidance scale must be"),
                                          (("--strength", "2", "--editor", "inpaint"), "The strength")])
def test_a_knob_out_of_range_is_refused_before_any_model_loads(env, capsys, option, says):
    """``--seed -1`` was refused only after grounding and segmentation ran; with a missing models
    folder the user was told to download models instead."""
    code, _, err = run(capsys, "edit", "photo.png", "make the cat red", "--target", "cat", "-o", "out.png",
                       "--models", str(env / "no-such-models"), *option)
    assert code == EXIT_INPUT and says in err, err
    one_line_error(err)
    assert not (env / "out.png").exists()


def test_a_models_folder_that_does_not_exist_is_named(env, capsys, monkeypatch, tmp_path):
    """``--models`` mistyped: the message only said to download the model."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    code, _, err = run(capsys, "edit", "photo.png", "make it red", "--box", "10,20,60,80", "-o", "out.png",
                       "--models", str(tmp_path / "modles"))
    assert code == EXIT_MODEL and not (env / "out.png").exists()
    one_line_error(err)
    assert f"the models folder '{tmp_path / 'modles'}' (LOCALEDIT_MODELS_DIR, --models) does not exist" in err


def test_a_models_folder_from_dotenv_may_start_with_a_tilde(env, capsys, monkeypatch, tiny_models_dir, tmp_path):
    """``LOCALEDIT_MODELS_DIR=~/models`` (as written in ``.env``, where no shell expands it) was read
    as a folder named "~": every model was looked for on the Hub instead."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "models").symlink_to(tiny_models_dir)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LOCALEDIT_MODELS_DIR", "~/models")
    code, listed, _ = run(capsys, "models", "list", "--json")
    assert code == 0 and listed["sam"]["source"] == str(tmp_path / "home" / "models" / "sam"), listed


def test_output_into_a_closed_pipe_is_no_error(tiny_models_dir):
    """``localedit models list | head -1``: "error: unexpected failure (BrokenPipeError ...)"."""
    exe = Path(sys.executable).parent / "localedit"
    proc = subprocess.Popen([str(exe), "models", "list", "--models", str(tiny_models_dir)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141 and err == "", err


def test_a_mask_out_for_a_global_edit_is_refused_before_any_model_runs(env, capsys, monkeypatch, tmp_path):
    """A global edit has no region: ``--mask-out`` was silently not written (exit 0, the file absent)."""
    monkeypatch.setenv("LOCALEDIT_MODELS_DIR", str(tmp_path / "no-models"))  # an edit that ran would exit 3
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    code, _, err = run(capsys, "edit", "photo.png", "make it look like winter", "-o", "out.png",
                       "--mask-out", "mask.png")
    assert code == EXIT_INPUT, err
    one_line_error(err)
    assert "--mask-out 'mask.png' would stay empty: this edit is global" in err
    assert not (env / "out.png").exists() and not (env / "mask.png").exists()


@pytest.mark.parametrize("option, value", [("--box-threshold", "2"), ("--box-threshold", "nan"),
                                           ("--text-threshold", "-1")])
def test_a_threshold_out_of_range_is_refused_before_any_model_runs(env, capsys, monkeypatch, tmp_path, option, value):
    """``--text-threshold -1`` ended in "unexpected failure (IndexError ...)"; ``--box-threshold 2`` or
    ``nan`` in "No 'cat' was found" after grounding ran. The worker's API already refuses them (422)."""
    monkeypatch.setenv("LOCALEDIT_MODELS_DIR", str(tmp_path / "no-models"))  # an edit that ran would exit 3
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    code, _, err = run(capsys, "edit", "photo.png", "make the cat red", "--target", "cat", "-o", "out.png",
                       option, value)
    assert code == EXIT_INPUT, err
    one_line_error(err)
    assert err.startswith(f"error: {option} {float(value)!r} is not accepted: Input should be")
    assert not (env / "out.png").exists()


@pytest.mark.parametrize("url", ["notaurl", "ftp://gpu-box", "http://", "http://127.0.0.1:99999", "http://[::1"])
def test_a_worker_address_that_is_no_address_is_refused(env, capsys, monkeypatch, url):
    """"http://[::1" ended in "unexpected failure (InvalidURL ...)"; "notaurl" was "not reachable right now"."""
    code, _, err = run(capsys, "edit", "photo.png", "make it red", "--box", "10,20,60,80", "-o", "out.png",
                       "--worker-url", url)
    assert code == EXIT_INPUT
    assert err == f"error: --worker-url {url!r} is not accepted: give the worker's address as http://HOST:PORT.\n"
    monkeypatch.setenv("LOCALEDIT_WORKER_URL", url)
    code, _, err = run(capsys, "chat-cli")
    assert code == EXIT_INPUT and err.startswith(f"error: LOCALEDIT_WORKER_URL {url!r} is not accepted"), err
