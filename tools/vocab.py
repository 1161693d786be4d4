"""Stand-in tokenizers built in memory, for the random models (tiny and full-size).

The real vocabularies (CLIP's and GPT-2's byte-level BPE, BERT's WordPiece) cannot be fetched here,
so the random models get tokenizers of the same classes that split text into characters. With
``vocab_size`` given, the vocabulary is padded to the real model's size and the special tokens sit
at the real models' ids (CLIP ``<|startoftext|>`` 49406 / ``<|endoftext|>`` 49407; BERT ``[PAD]`` 0,
``[UNK]`` 100, ``[CLS]`` 101, ``[SEP]`` 102, ``[MASK]`` 103 and ``.`` 1012 / ``?`` 1029, which
GroundingDINO's phrase splitting reads by id; OPT ``<pad>`` 1, ``</s>`` 2 and BLIP-2's ``<image>``
50265), so every id fits the full-size embedding tables and the configurations stay the published
ones. A character tokenizer turns a prompt into more tokens than BPE would: the CLIP text encoders
always pad to 77 tokens (no cost difference); GroundingDINO and BLIP-2 prompts get a few dozen more.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Optional

CLIP_CONTEXT = 77  # CLIP's context length; the diffusion text encoders use the same.


def byte_chars() -> list[str]:
    """The 256 printable stand-ins GPT-2 / CLIP byte-level BPE uses for bytes (GPT-2's table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def _padded(vocab: dict[str, int], size: int, fixed: Optional[dict[str, int]] = None) -> dict[str, int]:
    """``vocab`` with filler tokens up to ``size`` entries and ``fixed`` tokens at their ids."""
    fixed = fixed or {}
    taken = set(fixed.values())
    out: dict[str, int] = {}
    free = (i for i in range(size) if i not in taken)
    for tok in vocab:
        if tok not in fixed:
            out[tok] = next(free)
    out.update(fixed)
    used = set(out.values())
    out.update({f"<|filler_{i}|>": i for i in range(size) if i not in used})
    return out


def clip_tokenizer(vocab_size: Optional[int] = None):
    """A character-level ``CLIPTokenizer``: every byte is a token, no merges.

    ``vocab_size=None``: the smallest vocabulary (``<|startoftext|>`` 0, ``<|endoftext|>`` 1), for
    the tiny models; ``49408``: CLIP ViT-L/14's size with its special ids 49406 / 49407.
    """
    from transformers import CLIPTokenizer

    chars = byte_chars()
    vocab: dict[str, int] = {}
    if vocab_size is None:
        for tok in ["<|startoftext|>", "<|endoftext|>", *chars, *(c + "</w>" for c in chars)]:
            vocab.setdefault(tok, len(vocab))
    else:
        vocab = _padded({t: 0 for t in [*chars, *(c + "</w>" for c in chars)]}, vocab_size,
                        {"<|startoftext|>": vocab_size - 2, "<|endoftext|>": vocab_size - 1})
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=CLIP_CONTEXT, pad_token="<|endoftext|>")


BERT_SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
"""bert-base-uncased's ids for its special tokens and the two delimiters GroundingDINO looks for."""


def bert_tokenizer(vocab_size: Optional[int] = None):
    """A lower-case ``BertTokenizer`` over letters, digits and a few whole words.

    ``vocab_size=None``: the smallest vocabulary, for the tiny models; ``30522``: bert-base-uncased's
    size, with its special tokens (and ``.`` / ``?``) at :data:`BERT_SPECIAL_IDS`.
    """
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = list(string.ascii_lowercase + string.digits + ".,!?'-")
    words = ["cat", "dog", "fox", "car", "lamp", "person", "tree", "apple", "hat", "table"]
    vocab_list = specials + pieces + ["##" + c for c in string.ascii_lowercase + string.digits] + words
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    if vocab_size is not None:
        vocab = _padded(vocab, vocab_size, BERT_SPECIAL_IDS)
    return BertTokenizer(vocab=vocab, do_lower_case=True)


OPT_SPECIAL_IDS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
"""OPT's (GPT-2 vocabulary's) ids of its special tokens."""


def gpt2_tokenizer(folder: Path, vocab_size: Optional[int] = None):
    """A byte-level ``GPT2Tokenizer`` (what OPT uses) with BLIP-2's ``<image>`` token after the vocabulary.

    ``vocab_size=None``: ``</s>`` 0, ``<pad>`` 1 and the 256 bytes, for the tiny models; ``50265``:
    OPT's vocabulary size, with its special ids (:data:`OPT_SPECIAL_IDS`), so ``<image>`` is 50265 as
    in BLIP-2 OPT-2.7b's configuration. The vocabulary files are written to ``folder``.
    """
    from transformers import GPT2Tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    if vocab_size is None:
        vocab = {tok: i for i, tok in enumerate(["</s>", "<pad>", *byte_chars()])}
        unk = "</s>"
    else:
        vocab = _padded({c: 0 for c in byte_chars()}, vocab_size, OPT_SPECIAL_IDS)
        unk = "<unk>"
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = GPT2Tokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                        bos_token="</s>", eos_token="</s>", unk_token=unk, pad_token="<pad>")
    tok.add_special_tokens({"additional_special_tokens": ["<image>"]})
    tok.image_token = "<image>"
    return tok


QWEN_SPECIAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645,
                    "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
                    "<|image_pad|>": 151655, "<|video_pad|>": 151656}
"""Qwen2.5-VL's ids of the special tokens Qwen-Image-Edit's prompt template uses."""


def qwen2_tokenizer(vocab_size: Optional[int] = None):
    """A byte-level ``Qwen2Tokenizer`` (Qwen2.5-VL's, Qwen-Image-Edit's text encoder) with no merges.

    ``vocab_size=None``: the 256 bytes, then the special tokens of :data:`QWEN_SPECIAL_IDS` (ids
    256-263), for the tiny models; ``152064``: Qwen2.5-VL-7B's size with the real special ids.
    """
    from transformers import Qwen2Tokenizer

    if vocab_size is None:
        vocab = {tok: i for i, tok in enumerate([*byte_chars(), *QWEN_SPECIAL_IDS])}
    else:
        vocab = _padded({c: 0 for c in byte_chars()}, vocab_size, QWEN_SPECIAL_IDS)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=list(QWEN_SPECIAL_IDS)[1:])
    return tok


def qwen_special_ids(tokenizer) -> dict[str, int]:
    """The ids ``tokenizer`` gives Qwen2.5-VL's vision tokens (for the text encoder's configuration)."""
    return {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in
            (("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
             ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"))}


T5_SPECIAL = ["<pad>", "</s>", "<unk>"]
"""T5's first three ids."""


def t5_tokenizer(vocab_size: Optional[int] = None):
    """A character-level ``T5Tokenizer`` (Unigram; FLUX's second text encoder, T5-XXL).

    ``vocab_size=None``: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, printable characters and no extra ids,
    for the tiny models; ``32128``: T5's size (32000 pieces and the 100 ``<extra_id_*>``; the
    embedding table has 32128 rows).
    """
    from transformers import T5Tokenizer

    pieces = [*T5_SPECIAL, "\u2581", *(c for c in string.printable if not c.isspace())]
    pieces = list(dict.fromkeys(pieces))
    extra = 0
    if vocab_size is not None:
        extra = 100
        pieces += [f"<|filler_{i}|>" for i in range(vocab_size - extra - len(pieces))]
    vocab = [(p, 0.0 if p in T5_SPECIAL else -1.0) for p in pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=extra)


__all__ = ["CLIP_CONTEXT", "BERT_SPECIAL_IDS", "OPT_SPECIAL_IDS", "byte_chars", "clip_tokenizer",
           "bert_tokenizer", "gpt2_tokenizer",
           "QWEN_SPECIAL_IDS", "qwen2_tokenizer", "qwen_special_ids", "t5_tokenizer"]
