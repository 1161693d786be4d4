"""The judge: each check fires on an attempt that really fails it, the retry that follows changes what
the editor reads, and the attempt kept is the one that passed. Then "stronger" / "weaker" / "try
again" move the editor's own knob, through the Python Session and a scripted ``localedit chat-cli``.

Scoring runs the real ``Scorer``; where a check is about meaning (the instruction followed
backwards, the region unchanged) it runs on the hand-made embeddings of ``tests.colour_clip``,
whose answers are known. The attempts' pixels are painted by the test (after the real tiny editor
ran with the attempt's knobs), so each one fails or passes for a known reason.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np
import pytest
from PIL import Image, ImageDraw

from agent import judge
from agent.llm import Understander
from agent.session import Conversations
from tests.colour_clip import colour_scorer
from tests.conftest import scene
from tests.scenes import CATS, SIZE, SceneWorker, agent_settings, pixels
from tools.images import box_to_mask, dilate
from tools.types import EditRequest, EditResult, Segmentation

BLUE = (1, 1, 255)
Painter = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def ellipse(box) -> np.ndarray:
    """The object the scene draws in ``box`` (an ellipse), as a bool mask."""
    im = Image.new("L", SIZE)
    ImageDraw.Draw(im).ellipse(box, fill=255)
    return np.asarray(im) > 0


# ----------------------------------------------------------------------------- painted attempts


def recolour(colour) -> Painter:
    """The object turned ``colour``; nothing else touched."""
    def paint(arr, mask, box_mask):
        arr[mask] = colour
        return arr
    return paint


def unchanged(arr, mask, box_mask):
    return arr


def tinted_background(arr, mask, box_mask):
    """The object turned blue, and everything outside its box washed towards blue."""
    arr[mask] = BLUE
    outside = ~box_mask
    arr[outside] = (arr[outside] * 0.4 + np.array([0, 0, 255]) * 0.6).astype(np.uint8)
    return arr


def wide_band(arr, mask, box_mask):
    """The object turned blue and a 12-pixel band around it repainted (a far too wide feather)."""
    arr[mask] = BLUE
    arr[dilate(mask, 12) & ~mask] = (255, 0, 255)
    return arr


class JudgedWorker(SceneWorker):
    """The scene worker, with SAM's mask the drawn object, CLIP the hand-made colour embeddings,
    and each edit's pixels painted by the next painter after the real tiny editor ran."""

    def __init__(self, *args, painters: list[Painter], **kwargs):
        super().__init__(*args, **kwargs)
        self.painters = list(painters)
        self.requests: list[EditRequest] = []

    def _build(self, name):
        return colour_scorer() if name == "score" else super()._build(name)

    def segment(self, image, boxes):
        mask = np.zeros(SIZE[::-1], bool)
        for box in boxes:
            mask |= ellipse(box)
        return Segmentation(mask=mask, score=1.0, source="drawn")

    def edit(self, image, mask, request, progress=None, cancel=None):
        self.requests.append(request)
        real = super().edit(image, mask, request, progress=progress, cancel=cancel)
        obj = ellipse(CATS[0])
        painted = self.painters.pop(0)(np.array(image.convert("RGB")), obj, box_to_mask(CATS[0], SIZE))
        return EditResult(Image.fromarray(painted), real.editor, real.seconds, real.info, real.region)


@pytest.fixture
def judged(settings, registry, tmp_path, photo_path):
    """``judged(*painters)`` -> (session, worker): the judge with its real thresholds."""
    made = []

    def make(*painters: Painter, **overrides):
        s = settings.model_copy(update={"data_dir": tmp_path / f"data{len(made)}", "max_attempts": 3, **overrides})
        worker = JudgedWorker(s, registry=registry, painters=list(painters))
        conv = Conversations(s, worker=worker, understander=Understander(None))
        made.append(conv)
        chat = conv.session()
        chat.send("", image=photo_path)
        return chat, worker

    yield make
    for conv in made:
        conv.close()


def kept_attempt(chat) -> int:
    """Which attempt became the new version."""
    state = chat.state()
    return [a["path"] for a in state["attempts"]].index(chat.current_image_path())


def test_a_good_first_attempt_passes_every_check(judged):
    chat, worker = judged(recolour(BLUE))
    reply = chat.send("make the leftmost cat blue")
    assert not reply.error, reply.text
    assert len(reply.attempts) == 1 and reply.attempts[0]["problems"] == []
    s = reply.scores
    # the drawn ellipse reaches one pixel past its box (PIL draws the end row): CLIP-GC just under 100
    assert s["clip_dir"] > 0.5 and s["clip_rc"] > 40 and 99.9 < s["clip_gc"] < 100.0
    assert s["l1_outside"] == 0.0


def test_an_unchanged_region_fails_clip_rc_and_a_stronger_edit_follows(judged):
    chat, worker = judged(unchanged, recolour(BLUE))
    reply = chat.send("make the leftmost cat blue")
    first, second = chat.state()["attempts"]
    assert first["failed"] == ["region"], first["problems"]
    assert first["scores"]["clip_rc"] < 1.0 and first["scores"]["clip_rc_source"] > first["scores"]["clip_rc"]
    assert "still looks like the source" in first["problems"][0]
    assert second["why"] == "stronger edit" and second["problems"] == []
    # the retry moved the knobs InstructPix2Pix reads: text guidance up, image guidance down
    a, b = worker.requests
    assert (a.editor, b.editor) == ("ip2p-composite", "ip2p-composite")
    assert b.guidance_scale > a.guidance_scale and b.image_guidance_scale < a.image_guidance_scale
    assert kept_attempt(chat) == 1 and "kept the best: stronger edit" in reply.details


def test_an_edit_that_follows_the_instruction_backwards_fails_clip_direction(judged):
    chat, worker = judged(recolour((255, 255, 1)), recolour(BLUE))  # asked for blue, made yellow
    chat.send("make the leftmost cat blue")
    first, second = chat.state()["attempts"]
    assert "direction" in first["failed"] and first["scores"]["clip_dir"] < 0
    assert "goes against the instruction" in first["problems"][0]
    assert second["problems"] == [] and second["scores"]["clip_dir"] > 0
    assert kept_attempt(chat) == 1


def test_a_moved_background_fails_clip_gc_and_a_weaker_edit_follows(judged):
    chat, worker = judged(tinted_background, recolour(BLUE))
    reply = chat.send("make the leftmost cat blue")
    first, second = chat.state()["attempts"]
    assert {"background", "pixels"} == set(first["failed"]), first["problems"]
    assert first["scores"]["clip_gc"] < 90.0 and first["scores"]["l1_outside"] > 0.03
    assert second["why"].startswith("weaker edit") and second["problems"] == []
    a, b = worker.requests
    assert b.guidance_scale < a.guidance_scale and b.image_guidance_scale > a.image_guidance_scale
    assert kept_attempt(chat) == 1 and "text guidance 7.5 -> 5" in reply.details


def test_a_band_outside_the_object_fails_l1_outside(judged):
    chat, worker = judged(wide_band, recolour(BLUE))
    chat.send("make the leftmost cat blue")
    first, second = chat.state()["attempts"]
    assert "pixels" in first["failed"] and first["scores"]["l1_outside"] > 0.03
    assert second["why"].startswith("weaker edit") and second["problems"] == []
    assert kept_attempt(chat) == 1


def test_when_nothing_passes_the_best_is_kept_and_the_reply_says_so(judged):
    chat, worker = judged(unchanged, recolour((255, 255, 1)), tinted_background)
    reply = chat.send("make the leftmost cat blue")
    attempts = chat.state()["attempts"]
    assert [a["why"] for a in attempts] == ["first try", "stronger edit",
                                           "fallback: plain InstructPix2Pix on the whole image"]
    assert all(a["problems"] for a in attempts)
    best = max(range(3), key=lambda i: attempts[i]["combined"])
    assert kept_attempt(chat) == best and "It may still be off" in reply.text
    assert [r.editor for r in worker.requests] == ["ip2p-composite", "ip2p-composite", "ip2p"]


def whole_blue(arr, mask, box_mask):
    """The whole photo washed towards blue (a global edit)."""
    return (arr * 0.5 + np.array([0, 0, 255]) * 0.5).astype(np.uint8)


def test_a_global_edit_that_changed_nothing_fails_and_a_stronger_edit_follows(judged):
    """A zero change scores CLIP direction 0.0, which passes its floor: the whole-image L1 check fires."""
    chat, worker = judged(unchanged, whole_blue)
    reply = chat.send("make the whole photo blue")
    first, second = chat.state()["attempts"]
    assert first["scores"]["clip_dir"] == pytest.approx(0.0, abs=1e-6) and first["scores"]["l1"] == 0.0
    assert first["failed"] == ["unchanged"] and "barely changed" in first["problems"][0]
    assert second["why"] == "stronger edit" and second["problems"] == [], second["problems"]
    a, b = worker.requests
    assert (a.editor, b.editor) == ("ip2p", "ip2p") and b.guidance_scale > a.guidance_scale
    assert kept_attempt(chat) == 1 and not reply.error


# ----------------------------------------------------------------------------- the checks, one by one


def test_each_check_fires_on_its_metric_alone(settings):
    ok = {"clip_dir": 0.2, "clip_rc": 40.0, "clip_rc_source": 5.0, "clip_gc": 95.0, "l1_outside": 0.01}
    assert judge.problems(ok, settings, "replace") == []
    cases = {"direction": {"clip_dir": -0.1}, "region": {"clip_rc": 2.0}, "background": {"clip_gc": 88.0},
             "pixels": {"l1_outside": 0.05}}
    for kind, bad in cases.items():
        found = judge.problems({**ok, **bad}, settings, "replace")
        assert [p.kind for p in found] == [kind], (kind, found)
    # a removal is judged by the source category, which must drop (R-SIE's Delete RC)
    assert judge.problems({**ok, "clip_rc": None}, settings, "remove") == []
    still = judge.problems({**ok, "clip_rc": None, "clip_rc_source": 60.0}, settings, "remove")
    assert [p.kind for p in still] == ["region"] and "still there" in still[0].text
    # a global edit has no region: the direction counts, and that the photo changed at all
    assert [p.kind for p in judge.problems({"clip_dir": -0.5, "clip_gc": 10.0, "l1": 0.2}, settings,
                                           "global")] == ["direction"]
    assert [p.kind for p in judge.problems({"clip_dir": 0.0, "l1": 0.0}, settings, "global")] == ["unchanged"]
    assert judge.problems({"clip_dir": 0.0, "l1": 0.0}, settings, "replace") == []  # CLIP-RC's job there
    assert judge.problems({}, settings, "replace") == []  # missing metrics are not held against it


def test_a_removal_that_left_the_object_fails_and_one_that_removed_it_passes(settings):
    """max_clip_rc_source on real scores (the real Scorer, hand-made embeddings): the source category's
    probability in the target box crosses 20 while the red object is there, and not once it is gone."""
    from tools.region import EvalRegion, rc_labels

    image = Image.new("RGB", SIZE, (128, 128, 128))
    box = (20.0, 30.0, 60.0, 80.0)
    ImageDraw.Draw(image).rectangle((20, 30, 59, 79), fill=(255, 1, 1))
    gone = Image.new("RGB", SIZE, (128, 128, 128))  # the object painted over with the background
    target, source = rc_labels("remove", "red ball", None)
    assert (target, source) == ("", "red ball")
    scorer = colour_scorer()
    region = EvalRegion(boxes=(box,))
    for edited, fails in ((image, True), (gone, False)):
        s = scorer.score(image, edited, boxes=list(region.boxes), target_text=target, source_text=source)
        found = judge.problems(s.to_dict(), settings, "remove")
        assert s.clip_rc is None
        assert (s.clip_rc_source > settings.max_clip_rc_source) == fails, s.clip_rc_source
        assert ("region" in [p.kind for p in found]) == fails, found


def test_combined_puts_every_term_on_one_scale():
    good = {"clip_dir": 0.3, "clip_rc": 60.0, "clip_gc": 94.0, "l1_outside": 0.0}
    assert judge.combined(good) == pytest.approx(0.3 + 0.6 + 0.47)
    assert judge.combined({**good, "clip_gc": 80.0, "l1_outside": 0.1}) < judge.combined(good)
    assert judge.combined({"clip_rc_source": 50.0}, "remove") < judge.combined({"clip_rc_source": 5.0}, "remove")


# ----------------------------------------------------------------------------- knobs


@pytest.mark.parametrize("editor,knob,up", [
    ("ip2p-composite", "guidance_scale", True), ("ip2p-composite", "image_guidance_scale", False),
    ("ip2p", "guidance_scale", True), ("diffedit", "strength", True), ("regionwise", "strength", True)])
def test_stronger_and_weaker_move_the_editors_knob(settings, editor, knob, up):
    base = judge.base_knobs(editor, settings, {"strength": 0.7})
    stronger, weaker = judge.move_knobs(editor, base, +1), judge.move_knobs(editor, base, -1)
    assert stronger.moved and weaker.moved
    assert (stronger.knobs[knob] > base[knob]) == up and (weaker.knobs[knob] < base[knob]) == up
    assert f"{base[knob]:g} -> {stronger.knobs[knob]:g}" in stronger.text
    if editor in ("ip2p", "ip2p-composite"):
        assert base["strength"] is None  # they do not read it
    else:
        assert "encoding ratio" in stronger.text and stronger.knobs["guidance_scale"] == base["guidance_scale"]


def test_inpaint_strength_then_guidance_and_the_ends_of_the_ranges(settings):
    base = judge.base_knobs("inpaint", settings)
    assert base["strength"] == 1.0
    up = judge.move_knobs("inpaint", base, +1)  # strength is at its most: the text guidance moves
    assert up.moved and up.knobs["strength"] == 1.0 and up.knobs["guidance_scale"] == base["guidance_scale"] + 2.5
    assert "strength already 1" in up.text
    top = judge.move_knobs("diffedit", {**judge.base_knobs("diffedit", settings), "strength": 1.0}, +1)
    assert top.moved and top.knobs["guidance_scale"] == 10.0 and "encoding ratio already 1" in top.text
    down = judge.move_knobs("inpaint", base, -1)
    assert down.knobs["strength"] == 0.85 and down.knobs["guidance_scale"] == base["guidance_scale"]
    floor = judge.move_knobs("ip2p-composite", {"guidance_scale": 20.0, "image_guidance_scale": 1.0,
                                                "strength": None}, +1)
    assert not floor.moved  # already as strong as it goes
    assert judge.move_knobs("ip2p", {"guidance_scale": 7.5, "image_guidance_scale": 1.1, "strength": None},
                            +1).knobs["image_guidance_scale"] == 1.0  # never below 1 (guidance would switch off)


def test_knob_summary_names_what_each_editor_reads(settings):
    assert judge.knob_summary({"editor": "ip2p-composite", **judge.base_knobs("ip2p-composite", settings)}) == \
        "text guidance 7.5, image guidance 1.5"
    assert judge.knob_summary({"editor": "diffedit", "strength": 0.85}) == "encoding ratio 0.85"
    assert judge.knob_summary({"editor": "diffedit", **judge.base_knobs("diffedit", settings)}) == \
        "encoding ratio 0.7, text guidance 7.5"  # DiffEdit's classifier-free guidance on the edited caption
    assert judge.knob_summary({"editor": "inpaint", **judge.base_knobs("inpaint", settings)}) == \
        "strength 1, text guidance 7.5"


def test_attempt_queue_and_revise(settings):
    queue = judge.attempt_queue("replace", settings.model_copy(update={"max_attempts": 5}),
                                alternatives=[2], certain=False)
    assert [a["why"] for a in queue] == ["first try", "stronger edit", "another editor", "the other candidate",
                                         "fallback: plain InstructPix2Pix on the whole image"]
    first, stronger = queue[0], queue[1]
    assert stronger["guidance_scale"] > first["guidance_scale"] and stronger["seed"] == first["seed"]
    assert queue[2]["editor"] == "regionwise" and queue[2]["strength"] == settings.encoding_ratio
    revised = judge.revise_queue(queue[1:], first, ["background"])
    assert revised[0]["why"].startswith("weaker edit") and revised[0]["guidance_scale"] < first["guidance_scale"]
    assert judge.revise_queue(queue[1:], first, ["region", "background"]) == queue[1:]  # not only the background
    rerun = judge.attempt_queue("replace", settings, first={"editor": "diffedit", "seed": 4, "why": "stronger",
                                                            "knobs": {"strength": 0.85}, "knob": "x"})
    assert (rerun[0]["editor"], rerun[0]["seed"], rerun[0]["strength"], rerun[0]["why"]) == ("diffedit", 4, 0.85,
                                                                                            "stronger")
    assert judge.attempt_queue("global", settings)[1]["why"] == "stronger edit"


# ----------------------------------------------------------------------------- commands, as a user meets them


class RecordingWorker(SceneWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests: list[EditRequest] = []

    def edit(self, image, mask, request, progress=None, cancel=None):
        self.requests.append(request)
        return super().edit(image, mask, request, progress=progress, cancel=cancel)


@pytest.mark.parametrize("editor,knob,weaker_knob,text", [
    ("ip2p-composite", "guidance_scale", "guidance_scale", "text guidance 7.5 -> 10, image guidance 1.5 -> 1.25"),
    ("diffedit", "strength", "strength", "encoding ratio 0.7 -> 0.85"),
    ("regionwise", "strength", "strength", "encoding ratio 0.7 -> 0.85"),
    ("inpaint", "guidance_scale", "strength", "strength already 1, text guidance 7.5 -> 10"),
])
def test_stronger_then_weaker_change_the_pixels_and_say_what_moved(settings, registry, tmp_path, photo_path,
                                                                   editor, knob, weaker_knob, text):
    s = agent_settings(settings, tmp_path, editor=editor, steps=10, auto_retry=False)
    worker = RecordingWorker(s, registry=registry)
    conv = Conversations(s, worker=worker, understander=Understander(None))
    chat = conv.session()
    chat.send("", image=photo_path)
    chat.send("make the leftmost cat red")
    first = pixels(chat.current_image_path())
    reply = chat.send("make it stronger")
    assert not reply.error and text in reply.details and reply.text.startswith("Done, stronger:"), reply.details
    stronger = pixels(chat.current_image_path())
    assert not np.array_equal(first, stronger)
    # the re-run is a new version made from the same base image (the photo), beside the first edit
    assert len(chat.versions()) == 3 and chat.versions()[-1]["parent"] == 1
    weaker = chat.send("weaker")
    assert not weaker.error and "->" in weaker.details and weaker.text.startswith("Done, weaker:")
    a, b, c = worker.requests
    assert a.editor == b.editor == c.editor == editor and a.seed == b.seed == c.seed  # only the knob moved
    assert getattr(b, knob) > getattr(a, knob) and getattr(c, weaker_knob) < getattr(b, weaker_knob)
    if editor == "ip2p-composite":  # stronger: image guidance down; weaker: back up
        assert b.image_guidance_scale < a.image_guidance_scale == c.image_guidance_scale
    shown = pixels(chat.current_image_path())
    again = chat.send("try again")
    if editor == "diffedit":  # it draws no noise: another seed would repeat the picture, so none is made
        assert "no random noise" in again.text and len(worker.requests) == 3 and len(chat.versions()) == 4
    else:
        assert "seed 0 -> 1" in again.details and worker.requests[-1].seed == 1
        assert not np.array_equal(pixels(chat.current_image_path()), shown)  # another seed, other pixels
    conv.close()


def test_chat_cli_stronger_after_an_ip2p_composite_edit(tmp_path, tiny_models_dir, monkeypatch, capsys):
    """A scripted terminal session (``localedit chat-cli`` reading stdin): "stronger" gives other
    pixels and says which knob moved to what."""
    import io

    from agent.cli import main

    for name, value in {"MODELS_DIR": str(tiny_models_dir), "MAX_SIDE": "64", "STEPS": "2", "DEVICE": "cpu",
                        "DATA_DIR": str(tmp_path / "data"), "AUTO_RETRY": "false", "BOX_THRESHOLD": "0",
                        "TEXT_THRESHOLD": "0"}.items():
        monkeypatch.setenv(f"LOCALEDIT_{name}", value)
    monkeypatch.chdir(tmp_path)
    scene(SIZE, boxes=CATS).save(tmp_path / "cats.png")
    script = ("/image cats.png\nmake the leftmost cat red\n/details\n/save first.png\nstronger\n/details\n"
              "/save stronger.png\n/quit\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    assert main(["chat-cli"]) == 0
    said = capsys.readouterr().out
    assert "Traceback" not in said
    assert "Done, stronger: the leftmost cat is red now." in said, said  # one sentence; the knobs in /details
    assert "with ip2p-composite." in said, said  # the first edit
    assert "with ip2p-composite (stronger: text guidance 7.5 -> 10, image guidance 1.5 -> 1.25)." in said, said
    first, stronger = (np.asarray(Image.open(tmp_path / n)) for n in ("first.png", "stronger.png"))
    assert first.shape == stronger.shape and not np.array_equal(first, stronger)


# ----------------------------------------------------------------------------- every retry changes the edit


@pytest.mark.parametrize("editor,knobs", [
    ("ip2p-composite", None), ("diffedit", None), ("regionwise", None), ("inpaint", None),
    # at the top of the range the knob cannot move: the retry must still change what the editor reads
    ("diffedit", {"strength": 1.0}), ("regionwise", {"strength": 1.0}),
    ("diffedit", {"strength": 1.0, "guidance_scale": 20.0}),
    ("ip2p-composite", {"guidance_scale": 20.0, "image_guidance_scale": 1.0}),
])
def test_the_automatic_retry_changes_the_pixels(settings, registry, editor, knobs):
    """DESIGN: a retry must change something the editor reads. The first two attempts of the queue,
    run on the real tiny editor, give different pixels (DiffEdit draws no noise: a new seed is no retry)."""
    from tests.conftest import scene
    from tools.edit import Editor

    s = settings.model_copy(update={"steps": 4})
    queue = judge.attempt_queue("replace", s, first={"editor": editor, "knobs": knobs})
    first, retry = queue[0], queue[1]
    image = scene(SIZE, boxes=CATS)
    mask = ellipse(CATS[0])
    out = []
    for attempt in (first, retry):
        request = EditRequest(editor=attempt["editor"], instruction="turn it into a fox",
                              source_caption="a photo of a cat", target_caption="a photo of a fox",
                              seed=attempt["seed"], strength=attempt["strength"],
                              guidance_scale=attempt["guidance_scale"],
                              image_guidance_scale=attempt["image_guidance_scale"])
        out.append(np.asarray(Editor(registry, s).edit(image, mask, request).image))
    assert not np.array_equal(out[0], out[1]), (first, retry)
