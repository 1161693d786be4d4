"""bench.evaluate, bench.manifests and bench.report: the evaluation harness end to end on tiny models.

The harness runs on a small manifest of drawn scenes (objects at known boxes, ground-truth
boxes and masks); the summary statistics are checked against numbers worked out by hand, and
each manifest reader on a tiny example of its layout.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from bench import report
from bench.evaluate import COLUMNS, EvalConfig, Lpips, evaluate, main, parse_shard, sample_seed, select
from bench.manifests import (
    ManifestError, Sample, decode_rle, detect_format, read_ip2p, read_jsonl, read_magicbrush, read_manifest,
    read_piebench,
)
from tests.conftest import scene
from tools.images import mask_bbox
from tools.types import LocaleditError

SIZE = (64, 48)
BOXES = ((6, 10, 28, 38), (38, 8, 58, 30))
EDITORS = ["ip2p-composite", "regionwise"]
ALL_EDITORS = ["ip2p", *EDITORS]
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


# ----------------------------------------------------------------------------- helpers


class CountingWorker:
    """A LocalWorker wrapper that counts the calls the harness makes."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return method(*args, **kwargs)

        return counted


class StubLpips:
    """An LPIPS stand-in that is 'available': mean absolute pixel difference."""

    available = True
    note = "LPIPS: stub."

    def __call__(self, a: Image.Image, b: Image.Image) -> float:
        return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() / 255)


def ellipse_mask(size, box) -> Image.Image:
    im = Image.new("L", size, 0)
    ImageDraw.Draw(im).ellipse(box, fill=255)
    return im


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def make_manifest(folder: Path) -> Path:
    """Four samples: a GT box, a GT mask (target from the parser), a global edit, a missing file."""
    scene(SIZE, BOXES).save(folder / "a.png")
    scene(SIZE, BOXES[::-1]).save(folder / "b.png")
    scene(SIZE, ()).save(folder / "c.png")
    ellipse_mask(SIZE, BOXES[1]).save(folder / "b-mask.png")
    return write_jsonl(folder / "manifest.jsonl", [
        {"id": "boxed", "image": "a.png", "instruction": "turn the ball into a fox", "target": "ball",
         "source_caption": "a photo of a ball", "target_caption": "a photo of a fox", "box": list(BOXES[0])},
        {"id": "masked", "image": "b.png", "instruction": "make the ball red", "mask": "b-mask.png"},
        {"id": "scene", "image": "c.png", "instruction": "make it winter"},
        {"id": "missing", "image": "nope.png", "instruction": "make the ball blue", "box": "1,1,10,10"},
    ])


def config(out: Path, **kw) -> EvalConfig:
    """One attempt per pair unless a test asks for more: these tests are about each editor's row (the judge's
    attempts in an eval row: tests/agent/conversation/test_pipeline.py)."""
    defaults = dict(editors=EDITORS, baseline="ip2p", steps=2, concurrency=1, progress=False, box_threshold=0.0,
                    attempts=1)
    return EvalConfig(out=out, **{**defaults, **kw})


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def local_worker(settings, registry):
    from tools.worker import LocalWorker

    return LocalWorker(settings, registry=registry)


@pytest.fixture(scope="module")
def run(tmp_path_factory, local_worker):
    """One end-to-end evaluation (grounding, not GT masks) shared by the tests below."""
    folder = tmp_path_factory.mktemp("eval")
    manifest = make_manifest(folder)
    worker = CountingWorker(local_worker)
    cfg = config(folder / "out")
    summary = evaluate(read_manifest(manifest), worker, cfg, lpips=StubLpips(), manifest=str(manifest))
    return {"manifest": manifest, "out": cfg.out, "summary": summary, "worker": worker, "config": cfg}


def rows_by_pair(out: Path) -> dict[tuple[str, str], dict]:
    return {(r["sample"], r["editor"]): r for r in json.loads((out / "per_sample.json").read_text())}


# ----------------------------------------------------------------------------- end to end


def test_every_output_file_exists(run):
    out = run["out"]
    for name in ("results.jsonl", "run.json", "per_sample.csv", "per_sample.json", "summary.md", "summary.json"):
        assert (out / name).is_file(), name
    for sample in ("boxed", "masked", "scene"):
        for editor in ALL_EDITORS:
            with Image.open(out / "images" / sample / f"{editor}.png") as im:
                assert im.size == SIZE
    assert not (out / "images" / "missing").exists() or not any((out / "images" / "missing").iterdir())


def test_tables_have_one_row_per_sample_and_editor(run):
    out = run["out"]
    csv_rows = read_csv(out / "per_sample.csv")
    json_rows = json.loads((out / "per_sample.json").read_text())
    pairs = [(r["sample"], r["editor"]) for r in csv_rows]
    assert len(pairs) == len(set(pairs)) == 4 * 3
    assert set(pairs) == {(s, e) for s in ("boxed", "masked", "scene", "missing") for e in ALL_EDITORS}
    assert [(r["sample"], r["editor"]) for r in json_rows] == pairs
    assert list(csv_rows[0]) == list(COLUMNS)
    assert len((out / "results.jsonl").read_text().splitlines()) == 12


def test_rows_record_metrics_paths_timings_and_gt(run):
    rows = rows_by_pair(run["out"])
    boxed = rows[("boxed", "ip2p-composite")]
    assert boxed["status"] == "ok" and boxed["path"] == "localized" and boxed["region_source"] == "grounded"
    for metric in ("clip_i", "clip_t", "clip_dir", "clip_rc", "clip_rc_source", "clip_crop_t", "clip_gc", "l1",
                   "l2", "l1_outside", "l2_outside"):
        assert isinstance(boxed[metric], float), metric
    # every editor is scored on the sample's ground-truth box, whatever box it grounded itself
    assert {rows[("boxed", e)]["scored_on"] for e in ALL_EDITORS} == {"gt-box"}
    assert (boxed["rc_target"], boxed["rc_source"]) == ("fox", "ball")  # from the parser's plan
    assert 0.0 <= boxed["clip_rc"] <= 100.0 and 0.0 < boxed["clip_gc"] <= 100.0
    assert {rows[("masked", e)]["scored_on"] for e in ALL_EDITORS} == {"gt-mask"}
    assert boxed["lpips"] is not None and boxed["t_lpips"] is not None
    assert all(boxed[f"t_{s}"] is not None for s in ("load", "ground", "segment", "edit", "score", "total"))
    assert isinstance(boxed["gt_iou"], float) and boxed["gt_hit"] == (boxed["gt_iou"] >= 0.5)
    assert boxed["gt_box"] == [float(v) for v in BOXES[0]]
    # the baseline is given the same region (comparable region metrics) but edits the whole image
    base = rows[("boxed", "ip2p")]
    assert base["path"] == "global" and base["clip_rc"] is not None and base["l1_outside"] > 0
    assert base["l1_outside"] != base["l1"]  # outside the box only, not the whole image again
    # the target came from the parser; the GT box is the mask's bounding box
    masked = rows[("masked", "regionwise")]
    assert masked["target"] == "ball" and "from the parser" in masked["note"]
    assert masked["gt_box"] == list(mask_bbox(np.asarray(ellipse_mask(SIZE, BOXES[1])) > 127))
    # no subject: plain InstructPix2Pix (the CMU rule)
    glob = rows[("scene", "regionwise")]
    assert glob["path"] == "global" and glob["editor_ran"] == "ip2p" and glob["region_source"] == "none"
    assert glob["t_ground"] is None and glob["gt_iou"] is None
    # a missing file is an error row with the reason; the run went on
    missing = rows[("missing", "ip2p")]
    assert missing["status"] == "error" and "nope.png" in missing["error"] and missing["clip_i"] is None


def test_same_seed_per_sample(run):
    """On the global sample every editor runs ip2p with the sample's seed: identical outputs."""
    rows = rows_by_pair(run["out"])
    seeds = {rows[("scene", e)]["seed"] for e in ALL_EDITORS}
    assert seeds == {sample_seed(Sample("scene", Path("c.png"), "x"), 0)}
    images = [np.asarray(Image.open(run["out"] / "images" / "scene" / f"{e}.png")) for e in ALL_EDITORS]
    assert all(np.array_equal(images[0], im) for im in images[1:])


def test_summary_deltas_match_the_rows(run):
    rows = rows_by_pair(run["out"])
    summary = run["summary"]
    for editor in EDITORS:
        for metric in ("clip_i", "clip_dir"):
            deltas = [rows[(s, editor)][metric] - rows[(s, "ip2p")][metric] for s in ("boxed", "masked", "scene")
                      if rows[(s, editor)][metric] is not None and rows[(s, "ip2p")][metric] is not None]
            stats = summary["deltas"][editor][metric]
            assert stats["samples"] == len(deltas)
            assert stats["mean"] == pytest.approx(np.mean(deltas), abs=1e-9)
            tol = run["config"].tolerance  # counted by hand, not as the sum the summary makes of itself
            assert stats["improved"] == sum(d > tol for d in deltas), (editor, metric, deltas)
            assert stats["degraded"] == sum(d < -tol for d in deltas), (editor, metric, deltas)
    assert summary["paths"]["regionwise"] == {"localized": 2, "global": 1, "asked": 0, "errors": 1}
    assert summary["grounding"]["regionwise"]["n"] == 2
    md = (run["out"] / "summary.md").read_text()
    assert "## Mean per editor" in md and "### CLIP-I ↑" in md and "### CLIP-dir ↑" in md
    assert json.loads((run["out"] / "summary.json").read_text())["baseline"] == "ip2p"


def test_eval_picks_the_cat_the_chat_picks_and_says_where_the_chat_would_ask(settings, registry, tmp_path):
    """Two cats (grounding fixed to them, ``SceneWorker``): "the cat on the left" / "on the right" edit
    that cat, as the chat does (the eval used to edit detection 0, the left one, for both); a plain
    "the cat", where the chat asks which one, is not edited and its rows say what the chat asked,
    unless the sample's ground-truth box answers it (the cat it overlaps)."""
    from tests.helpers.scenes import CATS, SIZE as CATS_SIZE, SceneWorker

    left, right = CATS[0], CATS[2]
    scene(CATS_SIZE, (left, right)).save(tmp_path / "cats.png")
    manifest = write_jsonl(tmp_path / "cats.jsonl", [
        {"id": "left", "image": "cats.png", "instruction": "make the cat on the left blue"},
        {"id": "right", "image": "cats.png", "instruction": "make the cat on the right blue"},
        {"id": "which", "image": "cats.png", "instruction": "make the cat blue"},
        {"id": "answered", "image": "cats.png", "instruction": "make the cat blue", "box": list(right)},
    ])
    worker = SceneWorker(settings, registry=registry, objects={"cat": [left, right]})
    cfg = config(tmp_path / "out", editors=["ip2p-composite"])
    summary = evaluate(read_manifest(manifest), worker, cfg, lpips=StubLpips(), manifest=str(manifest))
    rows = rows_by_pair(cfg.out)
    for sample, box in (("left", left), ("right", right), ("answered", right)):
        for editor in ("ip2p-composite", "ip2p"):
            row = rows[(sample, editor)]
            assert row["status"] == "ok" and row["box"] == [float(v) for v in box], (sample, editor, row)
    assert rows[("left", "ip2p-composite")]["asked"] is None and rows[("left", "ip2p-composite")]["path"] == "localized"
    for editor in ("ip2p-composite", "ip2p"):
        which = rows[("which", editor)]
        assert which["status"] == "asked" and which["box"] is None and which["clip_i"] is None
        assert "Which one" in which["asked"] and "no edit" in which["note"], which
        assert not (cfg.out / "images" / "which" / f"{editor}.png").exists()
        answered = rows[("answered", editor)]
        assert answered["asked"] == which["asked"] and "ground truth overlaps most" in answered["note"]
    assert summary["paths"]["ip2p-composite"] == {"localized": 3, "global": 0, "asked": 1, "errors": 0}
    assert "the chat would ask which one (no edit)" in (cfg.out / "summary.md").read_text()


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib is not installed")
def test_plots_are_written(run):
    for name in ("delta_clip_i.png", "delta_clip_dir.png", "clip_gc_vs_clip_rc.png"):
        with Image.open(run["out"] / "plots" / name) as im:
            im.load()
            assert im.format == "PNG" and im.width > 100


def test_second_run_resumes(run, local_worker):
    out = run["out"]
    log_before = (out / "results.jsonl").read_bytes()
    image = out / "images" / "boxed" / "regionwise.png"
    mtime = image.stat().st_mtime_ns
    worker = CountingWorker(local_worker)
    summary = evaluate(read_manifest(run["manifest"]), worker, run["config"], lpips=StubLpips())
    assert worker.calls == {}  # nothing recomputed (the missing file is a finished error)
    assert (out / "results.jsonl").read_bytes() == log_before
    assert image.stat().st_mtime_ns == mtime
    assert summary["means"] == run["summary"]["means"]
    assert len(read_csv(out / "per_sample.csv")) == 12


def test_resume_refuses_other_settings(run, local_worker):
    with pytest.raises(LocaleditError, match="other settings"):
        evaluate(read_manifest(run["manifest"]), local_worker, config(run["out"], use_gt_masks=True))


def test_use_gt_masks_skips_grounding(tmp_path, local_worker):
    manifest = make_manifest(tmp_path)
    worker = CountingWorker(local_worker)
    cfg = config(tmp_path / "gt", editors=["ip2p-composite"], use_gt_masks=True, limit=2, concurrency=2)
    evaluate(read_manifest(manifest), worker, cfg, lpips=StubLpips())
    assert "ground" not in worker.calls and worker.calls["edit"] == 4
    rows = rows_by_pair(cfg.out)
    assert set(rows) == {(s, e) for s in ("boxed", "masked") for e in ("ip2p", "ip2p-composite")}
    assert rows[("boxed", "ip2p-composite")]["region_source"] == "gt-box"
    assert rows[("masked", "ip2p-composite")]["region_source"] == "gt-mask"
    for row in rows.values():
        assert row["t_ground"] is None and row["gt_iou"] is None and row["status"] == "ok"
        assert row["gt_box"] is not None
    assert {r["t_ground"] for r in read_csv(cfg.out / "per_sample.csv")} == {""}


def test_one_region_per_sample_counts_the_baseline_and_the_edit_band(tmp_path, local_worker):
    """Done-when of issue 10: on a manifest with boxes the baseline's L1 outside differs from its
    whole-image L1, and a masked editor whose edit band crosses the box scores CLIP-GC below 100;
    CLIP-RC and CLIP-GC are on R-SIE's 0-100 scale."""
    size, box = (96, 96), (30, 30, 66, 66)
    scene(size, (box,)).save(tmp_path / "ball.png")
    manifest = write_jsonl(tmp_path / "m.jsonl", [
        {"id": "ball", "image": "ball.png", "instruction": "turn the ball into a fox", "box": list(box)}])
    editors = ["ip2p-composite", "diffedit", "regionwise", "inpaint"]
    cfg = config(tmp_path / "out", editors=editors, use_gt_masks=True, plots=False)
    summary = evaluate(read_manifest(manifest), local_worker, cfg, lpips=StubLpips())
    rows = rows_by_pair(cfg.out)
    original = np.asarray(Image.open(tmp_path / "ball.png").convert("RGB"))
    inside_box = np.zeros(size[::-1], bool)
    inside_box[30:66, 30:66] = True
    base = rows[("ball", "ip2p")]
    assert base["scored_on"] == "gt-box" and base["l1_outside"] != base["l1"] and base["l1_outside"] > 0
    for editor in editors:
        row = rows[("ball", editor)]
        out = np.asarray(Image.open(cfg.out / row["image"]))
        band = (out != original).any(axis=-1) & ~inside_box
        assert band.any(), editor  # the dilated region reaches past the box ...
        assert row["clip_gc"] < 100.0, editor  # ... and CLIP-GC sees it
        assert row["l1_outside"] > 0.0, editor
        assert 0.0 <= row["clip_rc"] <= 100.0 and 0.0 < row["clip_gc"] <= 100.0
    md = (cfg.out / "summary.md").read_text()
    assert "## Metrics and their scales" in md and "| CLIP-RC ↑ (0-100)" in md and "CLIP-GC ↑ (0-100)" in md
    assert md.index("CLIP-RC ↑ (0-100)") < md.index("CLIP-GC ↑ (0-100)") < md.index("CLIP-I ↑ (0-1)")
    gc = summary["means"]["ip2p-composite"]["clip_gc"]
    assert f"{gc:.2f}" in md.split("## Mean per editor")[1].split("##")[0]  # R-SIE prints two decimals


def test_nothing_found_runs_global_and_records_a_miss(tmp_path, local_worker):
    manifest = make_manifest(tmp_path)
    cfg = config(tmp_path / "nf", editors=["regionwise"], baseline="regionwise", limit=1,
                 box_threshold=1.01)  # a sigmoid never exceeds 1: nothing is found
    summary = evaluate(read_manifest(manifest), local_worker, cfg, lpips=StubLpips())
    row = rows_by_pair(cfg.out)[("boxed", "regionwise")]
    assert row["status"] == "ok" and row["path"] == "global" and row["editor_ran"] == "ip2p"
    assert "nothing found" in row["note"] and row["t_ground"] is not None
    assert row["gt_iou"] == 0.0 and row["gt_hit"] is False
    assert summary["grounding"]["regionwise"] == {"n": 1, "mean_iou": 0.0, "hits": 0, "hit_rate": 0.0}


def test_cli_limit_and_shard(tmp_path, local_worker, monkeypatch, capsys):
    manifest = make_manifest(tmp_path)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))  # no AlexNet weights here
    out = tmp_path / "cli"
    code = main([str(manifest), "--editors", "ip2p-composite", "--out", str(out), "--limit", "3",
                 "--shard", "1/2", "--steps", "2", "--box-threshold", "0", "--no-progress", "--no-plots"],
                worker=local_worker)
    assert code == 0
    rows = read_csv(out / "per_sample.csv")
    assert {(r["sample"], r["editor"]) for r in rows} == {("masked", "ip2p"), ("masked", "ip2p-composite")}
    assert all(r["lpips"] == "" for r in rows)  # no weights: empty cells and a note
    assert "LPIPS cells are empty" in (out / "summary.md").read_text()
    assert "Mean per editor" in capsys.readouterr().out
    assert main([str(manifest), "--out", str(out), "--shard", "2/2"], worker=local_worker) == 2


def test_select_limit_then_shard():
    samples = [Sample(str(i), Path(f"{i}.png"), "x") for i in range(10)]
    assert [s.id for s in select(samples, limit=4)] == ["0", "1", "2", "3"]
    assert [s.id for s in select(samples, shard=(1, 3))] == ["1", "4", "7"]
    assert [s.id for s in select(samples, limit=5, shard=(0, 2))] == ["0", "2", "4"]
    assert [s.id for s in select(iter(samples), limit=5, shard=(1, 2))] == ["1", "3"]
    parts = [s.id for i in range(3) for s in select(samples, limit=7, shard=(i, 3))]
    assert sorted(parts, key=int) == [str(i) for i in range(7)]
    assert parse_shard("2/4") == (2, 4)
    with pytest.raises(LocaleditError):
        parse_shard("2")
    with pytest.raises(LocaleditError):
        EvalConfig(out=Path("x"), shard=(3, 3))
    with pytest.raises(LocaleditError, match="Unknown editor"):
        EvalConfig(out=Path("x"), editors=["nope"])


def test_lpips_absent_is_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    metric = Lpips()
    assert metric.available is False and "LPIPS cells are empty" in metric.note
    assert metric(scene(SIZE), scene(SIZE)) is None


# ----------------------------------------------------------------------------- report, by hand

HAND_ROWS = [
    # sample, editor, clip_i, l1 ; baseline ip2p
    *({"sample": s, "editor": "ip2p", "status": "ok", "clip_i": ci, "l1": l1, "path": "global"}
      for s, ci, l1 in [("s1", 0.80, 0.20), ("s2", 0.90, 0.10), ("s3", 0.70, 0.30), ("s4", 0.50, None),
                        ("s5", 0.60, 0.10)]),
    {"sample": "s1", "editor": "A", "status": "ok", "clip_i": 0.90, "l1": 0.05, "path": "localized", "gt_iou": 0.7},
    {"sample": "s2", "editor": "A", "status": "ok", "clip_i": 0.90, "l1": 0.10, "path": "localized", "gt_iou": 0.2},
    {"sample": "s3", "editor": "A", "status": "ok", "clip_i": 0.6995, "l1": 0.40, "path": "global"},
    {"sample": "s4", "editor": "A", "status": "ok", "clip_i": 0.30, "l1": 0.05, "path": "localized"},
    {"sample": "s5", "editor": "A", "status": "error", "error": "ImageError: gone", "clip_i": None},
]


def test_delta_stats_by_hand():
    # A - ip2p on CLIP-I: s1 +0.10, s2 0.00, s3 -0.0005 (within the tolerance), s4 -0.20; s5 failed
    pairs = report.paired_deltas(HAND_ROWS, "A", "ip2p", "clip_i")
    assert [s for s, _ in pairs] == ["s1", "s2", "s3", "s4"]
    assert [d for _, d in pairs] == pytest.approx([0.10, 0.0, -0.0005, -0.20])
    stats = report.delta_stats([d for _, d in pairs], +1, tolerance=1e-3)
    assert stats["samples"] == 4
    assert stats["mean"] == pytest.approx(-0.025125)
    assert stats["median"] == pytest.approx(-0.00025)
    # deviations 0.125125, 0.025125, 0.024625, -0.174875: squares sum 0.0474751875, / 3, sqrt
    assert stats["std"] == pytest.approx(0.12579770865)
    assert stats["min"] == pytest.approx(-0.20) and stats["max"] == pytest.approx(0.10)
    assert (stats["improved"], stats["degraded"], stats["unchanged"]) == (1, 1, 2)
    # a wider tolerance makes the 0.10 improvement the only change left
    wide = report.delta_stats([d for _, d in pairs], +1, tolerance=0.15)
    assert (wide["improved"], wide["degraded"]) == (0, 1)
    assert report.delta_stats([], +1) is None
    assert report.delta_stats([0.5], +1)["std"] == 0.0


def test_lower_is_better_metrics_count_decreases_as_improvements():
    # L1: s1 -0.15 (better), s2 0, s3 +0.10 (worse); s4 has no baseline value
    stats = report.summarize(HAND_ROWS, ["A"], "ip2p")["deltas"]["A"]["l1"]
    assert stats["samples"] == 3
    assert stats["mean"] == pytest.approx((-0.15 + 0.0 + 0.10) / 3)
    assert (stats["improved"], stats["degraded"], stats["unchanged"]) == (1, 1, 1)


def test_summary_and_markdown_by_hand():
    summary = report.summarize(HAND_ROWS, ["A"], "ip2p", tolerance=1e-3)
    assert summary["editors"] == ["ip2p", "A"] and summary["samples"] == 5
    assert summary["metrics"] == ["clip_i", "l1"]
    assert summary["means"]["ip2p"]["clip_i"] == pytest.approx(0.70)
    assert summary["means"]["A"]["n"] == 4 and summary["means"]["A"]["clip_i"] == pytest.approx(2.7995 / 4)
    assert summary["means"]["ip2p"]["l1"] == pytest.approx(0.175)
    assert summary["paths"]["A"] == {"localized": 3, "global": 1, "asked": 0, "errors": 1}
    assert summary["grounding"]["A"] == {"n": 2, "mean_iou": pytest.approx(0.45), "hits": 1, "hit_rate": 0.5}
    md = report.markdown(summary)
    assert "| A " in md and "-0.0251" in md and "+0.1000" in md and "-0.2000" in md
    assert "### L1 ↓" in md and "Grounding against the ground truth" in md


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib is not installed")
def test_plots_from_hand_rows(tmp_path):
    rows = [dict(r, clip_dir=r.get("clip_i"), clip_rc=0.2, clip_gc=0.9) for r in HAND_ROWS]
    written, notes = report.write_plots(rows, ["A"], "ip2p", tmp_path)
    assert sorted(p.name for p in written) == ["clip_gc_vs_clip_rc.png", "delta_clip_dir.png", "delta_clip_i.png"]
    assert notes == []
    written, notes = report.write_plots(rows, ["ip2p"], "ip2p", tmp_path / "alone")
    assert [p.name for p in written] == ["clip_gc_vs_clip_rc.png"] and len(notes) == 2


# ----------------------------------------------------------------------------- manifest readers


def test_jsonl_reader(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('# a comment\n'
                    '{"image": "x.png", "instruction": "make the cat red", "box": "1,2,11,12", "split": "dev"}\n'
                    '\n'
                    '{"id": "two", "image": "sub/y.png", "instruction": "remove the dog", "mask": "m.png", '
                    '"target": "dog", "seed": 7, "reference": "r.png"}\n')
    first, second = read_jsonl(path)
    assert first.id == "000001" and first.image == tmp_path / "x.png" and first.box == (1.0, 2.0, 11.0, 12.0)
    assert first.meta == {"split": "dev"} and first.target is None and first.has_gt
    assert second.id == "two" and second.mask == tmp_path / "m.png" and second.seed == 7
    assert second.reference == tmp_path / "r.png" and second.target == "dog"
    assert detect_format(path) == "jsonl"
    path.write_text('{"image": "x.png"}\n')
    with pytest.raises(ManifestError, match="instruction"):
        list(read_jsonl(path))
    path.write_text('{"id": "a", "image": "x.png", "instruction": "i"}\n{"id": "a", "image": "y.png", "instruction": "i"}\n')
    with pytest.raises(ManifestError, match="two samples"):
        list(read_manifest(path))


def test_magicbrush_reader(tmp_path):
    root = tmp_path / "dev"
    folder = root / "images" / "327726"
    folder.mkdir(parents=True)
    scene(SIZE).save(folder / "327726-input.png")
    scene(SIZE).save(folder / "327726-output1.png")
    mask = scene(SIZE).convert("RGBA")  # DALL-E 2 style: the edit region is erased (transparent)
    alpha = np.full((SIZE[1], SIZE[0]), 255, np.uint8)
    alpha[10:20, 5:25] = 0
    mask.putalpha(Image.fromarray(alpha))
    mask.save(folder / "327726-mask1.png")
    ellipse_mask(SIZE, BOXES[0]).save(folder / "327726-mask2.png")  # no transparency: white = region
    sessions = {"327726": [
        {"input": "327726-input.png", "mask": "327726-mask1.png", "output": "327726-output1.png",
         "instruction": "put a hat on the man"},
        {"input": "327726-output1.png", "mask": "327726-mask2.png", "output": "327726-output2.png",
         "instruction": "make the hat red"}]}
    (root / "edit_sessions.json").write_text(json.dumps(sessions))
    (root / "global_descriptions.json").write_text(json.dumps(
        {"327726": {"327726-input.png": "a man", "327726-output1.png": "a man with a hat"}}))
    assert detect_format(root) == "magicbrush" == detect_format(root / "edit_sessions.json")
    one, two = read_magicbrush(root / "edit_sessions.json")
    assert [s.id for s in read_manifest(root)] == [one.id, two.id]
    assert (one.id, two.id) == ("327726-1", "327726-2")
    assert one.image == folder / "327726-input.png" and two.image == folder / "327726-output1.png"
    assert one.reference == folder / "327726-output1.png" and one.instruction == "put a hat on the man"
    assert (one.source_caption, one.target_caption) == ("a man", "a man with a hat")
    assert (two.source_caption, two.target_caption) == ("a man with a hat", "")
    region = one.gt_mask(SIZE)
    assert region.sum() == 200 and region[10:20, 5:25].all()
    assert np.array_equal(two.gt_mask(SIZE), np.asarray(ellipse_mask(SIZE, BOXES[0])) > 127)


def test_piebench_reader(tmp_path):
    images = tmp_path / "annotation_images" / "1_change_object_80"
    images.mkdir(parents=True)
    Image.new("RGB", (512, 512), (90, 90, 90)).save(images / "111000000000.jpg")
    rle = [512 * 100 + 200, 50, 512 * 101 + 200, 50]  # two 50-pixel runs on rows 100 and 101
    mapping = {"111000000000": {
        "image_path": "1_change_object_80/111000000000.jpg",
        "original_prompt": "a [cat] sitting on a wooden floor", "editing_prompt": "a [dog] sitting on a wooden floor",
        "editing_instruction": "Change the cat to a dog", "editing_type_id": "1", "blended_word": "cat dog",
        "mask": rle}}
    (tmp_path / "mapping_file.json").write_text(json.dumps(mapping))
    assert detect_format(tmp_path) == "piebench" == detect_format(tmp_path / "mapping_file.json")
    (sample,) = read_piebench(tmp_path / "mapping_file.json")
    assert sample.id == "111000000000" and sample.image == images / "111000000000.jpg"
    assert sample.instruction == "Change the cat to a dog" and sample.target == "cat"
    assert sample.source_caption == "a cat sitting on a wooden floor"
    assert sample.target_caption == "a dog sitting on a wooden floor"
    assert sample.meta["editing_type_id"] == "1"
    mask = sample.gt_mask((512, 512))
    assert mask.sum() == 100 and mask[100, 200:250].all() and mask[101, 200:250].all() and not mask[0, 0]
    assert sample.gt_mask((256, 256)).shape == (256, 256)


def test_decode_rle_by_hand():
    mask = decode_rle([1, 2, 6, 1, 11, 9], (4, 3))  # runs past the end are cut
    assert mask.tolist() == [[False, True, True, False], [False, False, True, False], [False, False, False, True]]
    with pytest.raises(LocaleditError):
        decode_rle([1, 2, 3], (4, 3))


def test_ip2p_reader(tmp_path):
    for name, seeds in (("0000001_a cat", ["11", "12"]), ("0000002_a dog", ["5"])):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "prompt.json").write_text(json.dumps(
            {"input": f"photo of {name[8:]}", "edit": "make it a painting", "output": f"painting of {name[8:]}"}))
        for seed in seeds:
            scene(SIZE).save(folder / f"{seed}_0.jpg")
            scene(SIZE).save(folder / f"{seed}_1.jpg")
    assert detect_format(tmp_path) == "ip2p"
    listed = list(read_ip2p(tmp_path))
    assert [s.id for s in listed] == ["0000001_a cat_11", "0000001_a cat_12", "0000002_a dog_5"]
    first = listed[0]
    assert first.image == tmp_path / "0000001_a cat" / "11_0.jpg"
    assert first.reference == tmp_path / "0000001_a cat" / "11_1.jpg"
    assert (first.instruction, first.source_caption, first.target_caption) == (
        "make it a painting", "photo of a cat", "painting of a cat")
    assert not first.has_gt
    (tmp_path / "seeds.json").write_text(json.dumps([["0000002_a dog", ["5"]], ["0000001_a cat", ["12"]]]))
    assert [s.id for s in read_manifest(tmp_path, "ip2p")] == ["0000002_a dog_5", "0000001_a cat_12"]


def test_unknown_layout(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        detect_format(tmp_path / "nothing")
    with pytest.raises(ManifestError, match="--format"):
        detect_format(tmp_path)


def test_a_manifest_that_is_a_pipe_a_folder_or_not_text_is_one_sentence(tmp_path):
    """The index files are read like every other input (tools.files): regular files only, capped."""
    import os

    pipe = tmp_path / "samples.jsonl"
    os.mkfifo(pipe)  # reading it would block forever
    with pytest.raises(ManifestError, match="is a named pipe, not a regular file"):
        list(read_jsonl(pipe))
    with pytest.raises(ManifestError, match="does not exist"):
        list(read_jsonl(tmp_path / "missing.jsonl"))
    (tmp_path / "seeds.json").mkdir()
    with pytest.raises(ManifestError, match="is a folder, not a regular file"):
        list(read_ip2p(tmp_path))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ManifestError, match="not UTF-8 text"):
        list(read_jsonl(binary))
