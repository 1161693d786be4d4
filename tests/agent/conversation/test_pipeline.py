"""One request, three surfaces: the chat ``Session``, ``localedit edit`` and ``localedit eval`` run the
one pipeline (``agent.conversation.pipeline``), so they edit the same region with the same editor and the same
judged attempts. Tiny random models (their scores are noise, so the judge retries); grounding is the
test scene's one cat (``tests.helpers.scenes.SceneWorker``).
"""

from __future__ import annotations

import json

import pytest

from agent.cli import main
from agent.conversation import pipeline
from agent.language.llm import Understander
from agent.runtime.session import Conversations
from agent.runtime.store import ImageStore
from bench.evaluate import EvalConfig, evaluate
from bench.manifests import read_manifest
from tests.conftest import scene
from tests.helpers.scenes import SIZE, SceneWorker
from tools.config import Settings
from tools.images import box_to_mask

pytestmark = pytest.mark.slow
CAT = (60, 30, 110, 95)
COMPARED = ("editor", "why", "seed", "guidance_scale", "image_guidance_scale", "strength", "problems", "combined")


class NoLpips:
    available, note = False, "LPIPS off in this test."

    def __call__(self, a, b):
        return None


@pytest.fixture
def surfaces(tiny_models_dir, registry, tmp_path, monkeypatch):
    """``(settings, worker, photo path)``, with the environment ``localedit edit`` reads set alike."""
    env = {"LOCALEDIT_MODELS_DIR": str(tiny_models_dir), "LOCALEDIT_MAX_SIDE": "64", "LOCALEDIT_STEPS": "1",
           "LOCALEDIT_DEVICE": "cpu", "LOCALEDIT_DATA_DIR": str(tmp_path / "cli-data"),
           "LOCALEDIT_MAX_ATTEMPTS": "3"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LOCALEDIT_EDITOR", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings(models_dir=tiny_models_dir, data_dir=tmp_path / "data", device="cpu", max_side=64,
                        steps=1, max_attempts=3, _env_file=None)
    worker = SceneWorker(settings, registry=registry, objects={"cat": [CAT]})
    monkeypatch.setattr("tools.worker.make_worker", lambda _settings: worker)
    photo = tmp_path / "photo.png"
    scene(SIZE, boxes=[CAT]).save(photo)
    return settings, worker, photo


def through_the_chat(settings, worker, photo, instruction):
    conversations = Conversations(settings, worker=worker, understander=Understander(None))
    try:
        chat = conversations.session()
        chat.send("", image=str(photo))
        reply = chat.send(instruction)
        assert not reply.error and not reply.question, reply.text
        record = chat.record()
        return {"attempts": [tuple(a.get(k) for k in COMPARED) for a in reply.attempts],
                "kept": record["editor"], "boxes": [tuple(b) for b in record["boxes"]],
                "mask": ImageStore.open_mask(record["mask"])}
    finally:
        conversations.close()


def through_localedit_edit(capsys, photo, instruction, *extra):
    code = main(["edit", str(photo), instruction, "-o", "out.png", "--mask-out", "mask.png", *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def through_localedit_eval(settings, worker, photo, instruction, tmp_path, editor):
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "one", "image": str(photo), "instruction": instruction, "seed": 0}) + "\n")
    config = EvalConfig(out=tmp_path / "eval", editors=[editor], plots=False, progress=False)
    evaluate(read_manifest(manifest), worker, config, lpips=NoLpips(), settings=settings)
    rows = {row["editor"]: row for row in map(json.loads, (config.out / "results.jsonl").read_text().splitlines())}
    return rows


@pytest.mark.parametrize("instruction,action,editor", [
    ("add a hat to the cat", "add", "ip2p-composite"),
    ("turn the cat into a fox", "replace", "ip2p-composite"),
])
def test_one_request_gives_the_same_region_editor_and_attempts_everywhere(surfaces, capsys, tmp_path,
                                                                          instruction, action, editor):
    settings, worker, photo = surfaces
    chat = through_the_chat(settings, worker, photo, instruction)
    cli = through_localedit_edit(capsys, photo, instruction)
    rows = through_localedit_eval(settings, worker, photo, instruction, tmp_path, editor)

    # the region: the cat's box; "add" edits (and scores) that box grown, the others SAM's mask of the cat
    assert chat["boxes"] == [CAT] and tuple(cli["box"]) == CAT and tuple(rows[editor]["box"]) == CAT
    grown = pipeline.target_boxes(action, [CAT], SIZE)[0]
    if action == "add":
        assert cli["mask"]["source"] == "add-box" and grown != CAT
        assert tuple(cli["scored_on"]["boxes"][0]) == tuple(round(v, 1) for v in grown)
        assert chat["mask"].sum() == cli["mask"]["area"] == box_to_mask(grown, SIZE).sum()
    else:
        assert cli["mask"]["source"] == "sam" and tuple(cli["scored_on"]["boxes"][0]) == CAT
        assert chat["mask"].sum() == cli["mask"]["area"]

    # the attempts: the same editors, knobs, verdicts and scores, and the same one kept
    cli_attempts = [tuple(a.get(k) for k in COMPARED) for a in cli["attempts"]]
    eval_attempts = [tuple(a.get(k) for k in COMPARED) for a in rows[editor]["attempt_log"]]
    assert chat["attempts"] == cli_attempts == eval_attempts
    assert chat["attempts"][0][0] == editor and len(chat["attempts"]) >= 2  # the tiny models' edits are judged poor
    kept = [a for a in cli["attempts"] if a["kept"]]
    assert len(kept) == 1 and kept[0]["editor"] == cli["editor"] == chat["kept"] == rows[editor]["editor_ran"]
    assert rows[editor]["attempts"] == len(cli_attempts) and rows[editor]["kept"] == kept[0]["number"]
    # the eval's baseline stays the plain editor, once
    assert rows["ip2p"]["attempts"] == 1 and rows["ip2p"]["editor_ran"] == "ip2p"


def test_localedit_edit_runs_the_configured_editor_and_one_attempt_when_asked(surfaces, capsys, monkeypatch):
    settings, worker, photo = surfaces
    plain = through_localedit_edit(capsys, photo, "make the cat red", "--box", ",".join(map(str, CAT)),
                                   "--attempts", "1")
    assert [a["editor"] for a in plain["attempts"]] == ["ip2p-composite"] and plain["attempts"][0]["kept"]
    assert plain["attempts"][0]["verdict"] in ("good", "poor") and plain["attempts"][0]["scores"]
    monkeypatch.setenv("LOCALEDIT_EDITOR", "diffedit")
    report = through_localedit_edit(capsys, photo, "make the cat red", "--box", ",".join(map(str, CAT)),
                                    "--attempts", "1")
    assert [a["editor"] for a in report["attempts"]] == ["diffedit"] and report["editor"] == "diffedit"
    assert report["request"]["editor"] == "diffedit"
