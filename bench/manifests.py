"""Evaluation manifests: the samples an evaluation runs, read from four layouts.

Every reader yields :class:`Sample` objects lazily, in a fixed order (so ``--limit`` and
``--shard`` select the same samples on every machine). Paths in a manifest are relative to
the manifest's folder. Nothing is opened while reading except the index files; a missing
image shows up later, as an error row for that sample.

Layouts (``fmt`` names):

``jsonl``
    One JSON object per line; blank lines and lines starting with ``#`` are skipped.
    Fields: ``image`` (required), ``instruction`` (required), ``id`` (default: the line's
    1-based number among samples, zero-padded to 6 digits), ``source_caption``,
    ``target_caption``, ``target`` (the grounding phrase), ``box`` (ground truth,
    ``[x0, y0, x1, y1]`` or ``"x0,y0,x1,y1"`` in pixels), ``mask`` (ground-truth mask image:
    white = the object), ``reference`` (a ground-truth edited image), ``seed``, ``points``
    (clicks on the object, SAM point prompts: ``[[x, y], [x, y, 0], ...]`` or ``"x,y;x,y,0"``,
    a third value 0 = not on the object). Any other field is kept in ``Sample.meta``.

``magicbrush``
    The MagicBrush split folder (``dev/`` or ``test/``; give the folder or its
    ``edit_sessions.json``)::

        edit_sessions.json          {img_id: [{"input", "mask", "output", "instruction"}, ...]}
        images/<img_id>/<img_id>-input.png, <img_id>-output1.png, <img_id>-mask1.png, ...
        global_descriptions.json    optional: {img_id: {file name: caption}}

    One sample per turn, id ``<img_id>-<turn>`` (turn from 1). Each turn starts from the
    file its ``input`` names (the single-turn, "independent" setting of the MagicBrush
    evaluation: turn 2 starts from the ground-truth ``output1``). ``output`` is the
    reference. Masks follow DALL-E 2's convention (MagicBrush was annotated with it): the
    *transparent* pixels are the edit region; a mask without transparency is read white =
    region. Captions (for CLIP-T and CLIP direction) come from ``global_descriptions.json``:
    the input file's description is the source caption, the output file's the target.

``piebench``
    PIE-Bench's ``mapping_file.json`` (give the file or its folder)::

        {"000000000000": {"image_path": "0_random_140/000000000000.jpg",
                          "original_prompt": "a [cat] sitting on a wooden floor",
                          "editing_prompt": "a [dog] sitting on a wooden floor",
                          "editing_instruction": "Change the cat to a dog",
                          "editing_type_id": "0", "blended_word": "cat dog",
                          "mask": [start, length, start, length, ...]}, ...}

    Images are looked up under ``annotation_images/`` beside the file (then beside the file
    itself). The prompts without their brackets are the source / target captions; the first
    bracketed phrase of ``original_prompt`` is the target (none for "add" edits, whose
    brackets are only in the editing prompt). ``mask`` is PIE-Bench's run-length encoding
    of the 512 x 512 edit region (pairs of flat row-major start index and run length); it is
    decoded as is (the PIE-Bench metric scripts also set the border pixels, for their
    background metrics; that is not done here) and resized to the image.
    ``editing_type_id`` and ``blended_word`` go to ``meta``.

``ip2p``
    The InstructPix2Pix generated dataset (e.g. ``clip-filtered-dataset/``)::

        seeds.json                      optional: [[prompt dir, [seed, ...]], ...]
        <prompt dir>/prompt.json        {"input": caption, "edit": instruction, "output": caption}
        <prompt dir>/<seed>_0.jpg       the input image
        <prompt dir>/<seed>_1.jpg       the generated edit (the reference)

    One sample per (prompt dir, seed), id ``<prompt dir>_<seed>``, in ``seeds.json`` order
    (without it: prompt dirs sorted by name, seeds by file name). No boxes or masks.

The target and captions a manifest leaves out are filled in by the harness from the
offline parser (``agent.language.parser.parse``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np
from PIL import Image

from tools.files import read_file
from tools.images import load_mask, parse_box, parse_point, resize_mask
from tools.types import Box, ImageError, LocaleditError

FORMATS = ("jsonl", "magicbrush", "piebench", "ip2p")
"""Manifest layouts :func:`read_manifest` understands (plus ``auto``)."""

PIEBENCH_MASK_SIZE = (512, 512)
"""PIE-Bench encodes every mask at 512 x 512 (width, height)."""
MAX_INDEX_BYTES = 512 * 2**20
"""The largest index file read (MagicBrush's edit_sessions.json, the biggest of the layouts, is ~20 MB)."""


class ManifestError(LocaleditError):
    """The manifest cannot be read (missing, malformed, or of an unknown layout)."""


@dataclass
class Sample:
    """One evaluation sample: an image, an instruction, and what the manifest knows about it."""

    id: str
    image: Path
    instruction: str
    source_caption: str = ""
    target_caption: str = ""
    target: Optional[str] = None  # grounding phrase; None: ask the parser
    box: Optional[Box] = None  # ground-truth box, original pixels
    mask: Optional[Path] = None  # ground-truth mask image
    mask_transparent: bool = False  # the mask's transparent pixels are the region (MagicBrush)
    mask_rle: Optional[list[int]] = None  # PIE-Bench run-length mask
    reference: Optional[Path] = None  # a ground-truth edited image
    seed: Optional[int] = None
    points: list[tuple[float, float, int]] = field(default_factory=list)  # (x, y, label) clicks on the object
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_gt(self) -> bool:
        """Whether the manifest gives a ground-truth region (box or mask)."""
        return self.box is not None or self.mask is not None or self.mask_rle is not None

    def gt_mask(self, size: tuple[int, int]) -> Optional[np.ndarray]:
        """The ground-truth mask as bool ``(H, W)`` for an image of ``size`` (w, h), or None.

        Raises :class:`~tools.types.ImageError` when the mask file is bad or empty.
        """
        if self.mask_rle is not None:
            return decode_rle(self.mask_rle, PIEBENCH_MASK_SIZE, size)
        if self.mask is None:
            return None
        if self.mask_transparent:
            mask = _transparent_region(self.mask, size)
            if mask is not None:
                return mask
        return load_mask(self.mask, size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able description (paths as strings, no RLE payload)."""
        return {"id": self.id, "image": str(self.image), "instruction": self.instruction,
                "source_caption": self.source_caption, "target_caption": self.target_caption,
                "target": self.target, "box": list(self.box) if self.box else None,
                "mask": str(self.mask) if self.mask else ("rle" if self.mask_rle else None),
                "reference": str(self.reference) if self.reference else None,
                "seed": self.seed, "points": [list(p) for p in self.points], "meta": self.meta}


# --------------------------------------------------------------------------- masks


def decode_rle(rle: list[int], rle_size: tuple[int, int], size: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Decode PIE-Bench's ``[start, length, ...]`` run-length mask of ``rle_size`` (w, h).

    Runs index the flattened row-major image; a run past the end is cut. Resized to ``size``
    (``tools.images.resize_mask``) when given. Raises :class:`ImageError` for an odd-length or empty encoding.
    """
    w, h = rle_size
    if len(rle) % 2:
        raise ImageError("The run-length mask has an odd number of values (it must be start, length pairs).")
    flat = np.zeros(w * h, dtype=bool)
    for start, length in zip(rle[0::2], rle[1::2]):
        start, length = int(start), int(length)
        if length > 0 and 0 <= start < flat.size:
            flat[start:start + length] = True
    if not flat.any():
        raise ImageError("The run-length mask is empty.")
    mask = flat.reshape(h, w)
    return resize_mask(mask, size) if size is not None and size != (w, h) else mask


def _transparent_region(path: Path, size: tuple[int, int]) -> Optional[np.ndarray]:
    """The transparent pixels of ``path`` as a mask of ``size``; None when nothing is transparent."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("RGBA", "LA", "PA") and "transparency" not in img.info:
                return None
            alpha = img.convert("RGBA").getchannel("A")
    except (OSError, ValueError) as err:
        raise ImageError(f"The mask {str(path)!r} cannot be read ({err}).") from err
    mask = np.asarray(alpha) < 128
    if not mask.any():
        return None
    return resize_mask(mask, size) if alpha.size != tuple(size) else mask


# --------------------------------------------------------------------------- readers


def _read_text(path: Path) -> str:
    """An index file's text: a regular file (no pipe or device) of at most :data:`MAX_INDEX_BYTES`."""
    data = read_file(path, MAX_INDEX_BYTES, name=f"The manifest file {str(path)!r}", error=ManifestError)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ManifestError(f"The manifest file {str(path)!r} is not UTF-8 text ({err.reason}).") from None


def _read_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ManifestError(f"The manifest file {str(path)!r} is not valid JSON ({err}).") from None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _box(value: Any, where: str) -> Optional[Box]:
    if value in (None, "", []):
        return None
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        return parse_box(text)
    except ValueError as err:
        raise ManifestError(f"{where}: {err}") from err


def _points(value: Any, where: str) -> list[tuple[float, float, int]]:
    """``[[x, y], [x, y, 0]]`` or ``"x,y;x,y,0"`` as ``(x, y, label)`` triples."""
    if value in (None, "", []):
        return []
    items = value.split(";") if isinstance(value, str) else value
    out = []
    for item in items:
        text = item if isinstance(item, str) else ",".join(str(v) for v in item) if isinstance(item, list) else str(item)
        try:
            (x, y), label = parse_point(text)
        except ValueError as err:
            raise ManifestError(f"{where}: {err}") from err
        out.append((x, y, label))
    return out


JSONL_FIELDS = {"id", "image", "instruction", "source_caption", "target_caption", "target", "box",
                "mask", "reference", "seed", "points"}


def read_jsonl(path: Path) -> Iterator[Sample]:
    """Samples of a JSONL manifest (fields in the module docstring)."""
    path = Path(path)
    root = path.parent
    lines = _read_text(path).splitlines()
    count = 0
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{where} is not valid JSON ({err.msg}).") from err
        if not isinstance(row, dict) or not row.get("image") or not _text(row.get("instruction")):
            raise ManifestError(f"{where} needs at least \"image\" and \"instruction\".")
        count += 1
        seed = row.get("seed")
        yield Sample(
            id=_text(row.get("id")) or f"{count:06d}",
            image=root / str(row["image"]),
            instruction=_text(row["instruction"]),
            source_caption=_text(row.get("source_caption")),
            target_caption=_text(row.get("target_caption")),
            target=_text(row.get("target")) or None,
            box=_box(row.get("box"), where),
            mask=root / str(row["mask"]) if row.get("mask") else None,
            reference=root / str(row["reference"]) if row.get("reference") else None,
            seed=int(seed) if seed not in (None, "") else None,
            points=_points(row.get("points"), where),
            meta={k: v for k, v in row.items() if k not in JSONL_FIELDS},
        )


def read_magicbrush(path: Path) -> Iterator[Sample]:
    """Samples of a MagicBrush split: one per turn of ``edit_sessions.json``."""
    path = Path(path)
    root = path.parent if path.is_file() else path
    sessions = _read_json(root / "edit_sessions.json")
    if not isinstance(sessions, dict):
        raise ManifestError("edit_sessions.json must map image ids to lists of turns.")
    descriptions_file = root / "global_descriptions.json"
    descriptions = _read_json(descriptions_file) if descriptions_file.exists() else {}
    images = root / "images"
    for img_id in sorted(sessions, key=_natural_key):
        turns = sessions[img_id]
        captions = descriptions.get(img_id, {}) if isinstance(descriptions, dict) else {}
        for turn, data in enumerate(turns, start=1):
            if not isinstance(data, dict) or not data.get("input") or not _text(data.get("instruction")):
                raise ManifestError(f"edit_sessions.json: turn {turn} of image {img_id} needs input and instruction.")
            folder = images / str(data["input"]).split("-")[0]
            yield Sample(
                id=f"{img_id}-{turn}",
                image=folder / data["input"],
                instruction=_text(data["instruction"]),
                source_caption=_text(captions.get(data["input"])),
                target_caption=_text(captions.get(data.get("output"))),
                mask=folder / data["mask"] if data.get("mask") else None,
                mask_transparent=True,
                reference=folder / data["output"] if data.get("output") else None,
                meta={"img_id": str(img_id), "turn": turn},
            )


_BRACKETS = re.compile(r"\[([^\]]*)\]")


def read_piebench(path: Path) -> Iterator[Sample]:
    """Samples of PIE-Bench's ``mapping_file.json``, in key order."""
    path = Path(path)
    file = path / "mapping_file.json" if path.is_dir() else path
    mapping = _read_json(file)
    if not isinstance(mapping, dict):
        raise ManifestError(f"{file.name} must map sample ids to annotations.")
    images = file.parent / "annotation_images"
    if not images.is_dir():
        images = file.parent
    for key in sorted(mapping):
        item = mapping[key]
        if not isinstance(item, dict) or not item.get("image_path"):
            raise ManifestError(f"{file.name}: sample {key} has no image_path.")
        original, editing = _text(item.get("original_prompt")), _text(item.get("editing_prompt"))
        bracketed = _BRACKETS.search(original)
        mask = item.get("mask")
        yield Sample(
            id=str(key),
            image=images / item["image_path"],
            instruction=_text(item.get("editing_instruction")) or editing.replace("[", "").replace("]", ""),
            source_caption=original.replace("[", "").replace("]", ""),
            target_caption=editing.replace("[", "").replace("]", ""),
            target=(_text(bracketed.group(1)) or None) if bracketed else None,
            mask_rle=[int(v) for v in mask] if mask else None,
            meta={"editing_type_id": item.get("editing_type_id"), "blended_word": item.get("blended_word")},
        )


def _ip2p_seeds(root: Path) -> Iterable[tuple[str, list[str]]]:
    """``(prompt dir, seeds)`` from ``seeds.json``, or by listing the folder."""
    listing = root / "seeds.json"
    if listing.exists():
        data = _read_json(listing)
        if not isinstance(data, list):
            raise ManifestError("seeds.json must be a list of [prompt dir, [seeds]] pairs.")
        return ((str(name), [str(s) for s in seeds]) for name, seeds in data)
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: _natural_key(p.name))
    return ((p.name, [f.name.split("_")[0] for f in sorted(p.glob("*_0.jpg"))]) for p in folders)


def read_ip2p(path: Path) -> Iterator[Sample]:
    """Samples of an InstructPix2Pix dataset folder: one per (prompt dir, seed)."""
    root = Path(path)
    if not root.is_dir():
        raise ManifestError(f"The InstructPix2Pix dataset folder {str(root)!r} does not exist.")
    for name, seeds in _ip2p_seeds(root):
        prompt = _read_json(root / name / "prompt.json")
        if not isinstance(prompt, dict) or not _text(prompt.get("edit")):
            raise ManifestError(f"{name}/prompt.json needs an \"edit\" instruction.")
        for seed in seeds:
            yield Sample(
                id=f"{name}_{seed}",
                image=root / name / f"{seed}_0.jpg",
                instruction=_text(prompt["edit"]),
                source_caption=_text(prompt.get("input")),
                target_caption=_text(prompt.get("output")),
                reference=root / name / f"{seed}_1.jpg",
                meta={"prompt_dir": name, "ip2p_seed": seed},
            )


def _natural_key(text: str) -> list:
    """Sort key that orders ``"2"`` before ``"10"``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", str(text)) if part]


READERS: dict[str, Callable[[Path], Iterator[Sample]]] = {
    "jsonl": read_jsonl, "magicbrush": read_magicbrush, "piebench": read_piebench, "ip2p": read_ip2p,
}


def detect_format(path: Path) -> str:
    """The layout of ``path``: by file name / extension, or by what a folder holds."""
    path = Path(path)
    if path.is_file():
        if path.name == "edit_sessions.json":
            return "magicbrush"
        if path.suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        if path.suffix == ".json":
            return "piebench"
    elif path.is_dir():
        if (path / "edit_sessions.json").exists():
            return "magicbrush"
        if (path / "mapping_file.json").exists():
            return "piebench"
        if (path / "seeds.json").exists() or any(path.glob("*/prompt.json")):
            return "ip2p"
    else:
        raise ManifestError(f"The manifest {str(path)!r} does not exist.")
    raise ManifestError(f"Cannot tell the layout of {str(path)!r}; give --format ({', '.join(FORMATS)}).")


def read_manifest(path: str | Path, fmt: str = "auto") -> Iterator[Sample]:
    """The samples of ``path`` in its layout (``auto``: :func:`detect_format`), lazily.

    Raises :class:`ManifestError` for an unknown layout or a malformed index, and for two
    samples with the same id.
    """
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in READERS:
        raise ManifestError(f"Unknown manifest format {fmt!r}; use one of {', '.join(FORMATS)} or auto.")
    seen: set[str] = set()
    for sample in READERS[fmt](path):
        if sample.id in seen:
            raise ManifestError(f"The manifest has two samples with the id {sample.id!r}.")
        seen.add(sample.id)
        yield sample
