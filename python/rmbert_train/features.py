"""Reader for the NER examples that `rmbert features` writes (format "rmbert-features/1"), numpy only.

The TypeScript knowledge layer (src/knowledge/sentence-tree.ts) is the one implementation of the K-BERT
sentence tree; `rmbert features --corpus medical` writes its output per split into DIR/<split>/:

  meta.json               labels (index = label id), knowledge settings, padId/clsId/sepId, counts, stats
  offsets.i32             [N + 1] token offsets of each example into the ragged arrays
  token_ids.i32, soft_positions.i32, segment_ids.i32, label_ids.i32, char_start.i32, char_end.i32
                          ragged, `tokens` long; label -1 = ignored by the loss (injected, [CLS], [SEP]);
                          char_start/char_end: UTF-16 offsets [start, end) into the sentence text, -1 for
                          injected and special tokens
  sentence.i32            [N] sentence index of each example (a long sentence gives several windows)
  visibility.u8           per example its L x L visibility (1 = visible), row-major, np.packbits order,
                          each example padded to a whole byte
  visibility_offsets.i64  [N + 1] byte offsets into visibility.u8
  sentences.jsonl         {"text", "labels": one BIO tag per character, optional "repaired"}

All arrays are little-endian. Example use:

    split = load_split(".cache/features/medical-kg/train")
    token_ids, soft_positions, segment_ids, label_ids, visible = split.example(0)
    batch = split.batch([0, 1, 2])       # padded int64 arrays + float32 additive mask [B, T, T]
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

FORMAT = "rmbert-features/1"
#: Added to attention scores where a pair is not visible (src/domain MASK_NEGATIVE, paper eq. 8).
MASK_NEGATIVE = -10000.0

_RAGGED = ("token_ids", "soft_positions", "segment_ids", "label_ids", "char_start", "char_end")


@dataclass
class FeatureSplit:
    """One split: ragged token arrays (int32), per-example offsets, packed visibility, meta and sentences."""

    directory: str
    meta: Dict[str, Any]
    sentences: List[Dict[str, Any]]
    offsets: np.ndarray  # int32 [N + 1]
    token_ids: np.ndarray  # int32 [tokens]
    soft_positions: np.ndarray
    segment_ids: np.ndarray
    label_ids: np.ndarray
    char_start: np.ndarray
    char_end: np.ndarray
    sentence: np.ndarray  # int32 [N]
    visibility: np.ndarray  # uint8 [visibility bytes]
    visibility_offsets: np.ndarray  # int64 [N + 1]

    def __len__(self) -> int:
        return len(self.sentence)

    @property
    def labels(self) -> List[str]:
        return self.meta["labels"]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per example (int64 [N])."""
        return np.diff(self.offsets).astype(np.int64)

    def tokens(self, name: str, i: int) -> np.ndarray:
        """Example i's slice of one ragged array (a view), e.g. tokens("char_start", i)."""
        return getattr(self, name)[self.offsets[i] : self.offsets[i + 1]]

    def visible(self, i: int) -> np.ndarray:
        """Example i's visibility as bool [L, L] (True: token r may attend to token c)."""
        n = int(self.offsets[i + 1] - self.offsets[i])
        bits = self.visibility[self.visibility_offsets[i] : self.visibility_offsets[i + 1]]
        return np.unpackbits(bits, count=n * n).reshape(n, n).astype(bool)

    def example(self, i: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(token_ids, soft_positions, segment_ids, label_ids, visibility bool [L, L]) of example i."""
        return (
            self.tokens("token_ids", i),
            self.tokens("soft_positions", i),
            self.tokens("segment_ids", i),
            self.tokens("label_ids", i),
            self.visible(i),
        )

    def batch(self, indices: Sequence[int], pad_id: int | None = None) -> Dict[str, np.ndarray]:
        """Padded inputs of the examples `indices`, T = the longest of them.

        Returns int64 [B, T] token_ids (pad_id, default meta padId), soft_positions, segment_ids (0 in
        padding), label_ids (-1 in padding), int64 [B] lengths, and float32 [B, T, T] mask: 0 where visible,
        MASK_NEGATIVE where not; padding columns are never visible; a padding row sees only column 0 (as
        writeAdditiveMask does, so softmax stays finite; its outputs are meant to be ignored).
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise ValueError("batch() needs at least one example index")
        pad = int(self.meta["padId"] if pad_id is None else pad_id)
        lengths = np.array([self.offsets[i + 1] - self.offsets[i] for i in idx], dtype=np.int64)
        B, T = len(idx), int(lengths.max())
        out = {
            "token_ids": np.full((B, T), pad, dtype=np.int64),
            "soft_positions": np.zeros((B, T), dtype=np.int64),
            "segment_ids": np.zeros((B, T), dtype=np.int64),
            "label_ids": np.full((B, T), -1, dtype=np.int64),
        }
        mask = np.full((B, T, T), MASK_NEGATIVE, dtype=np.float32)
        for b, i in enumerate(idx):
            n = int(lengths[b])
            for name in out:
                out[name][b, :n] = self.tokens(name, i)
            mask[b, :n, :n] = np.where(self.visible(i), 0.0, MASK_NEGATIVE)
            mask[b, n:, 0] = 0.0
        out["mask"] = mask
        out["lengths"] = lengths
        return out


def _read(directory: str, name: str, dtype: str, count: int) -> np.ndarray:
    path = os.path.join(directory, name)
    array = np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<"))
    if array.size != count:
        raise ValueError(f"{path}: {array.size} values, meta.json says {count}")
    return array.astype(np.dtype(dtype).newbyteorder("="), copy=False)


def load_split(directory: str) -> FeatureSplit:
    """Loads DIR/<split> as written by `rmbert features`; checks the format and that sizes agree with meta.json."""
    meta_path = os.path.join(directory, "meta.json")
    if not os.path.exists(meta_path):
        raise FileNotFoundError(f"{meta_path} not found (not a features split, or its export did not finish)")
    with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r}, this reader reads {FORMAT!r}")
    n, total = int(meta["examples"]), int(meta["tokens"])
    offsets = _read(directory, "offsets.i32", "i4", n + 1)
    ragged = {name: _read(directory, f"{name}.i32", "i4", total) for name in _RAGGED}
    vis_offsets = _read(directory, "visibility_offsets.i64", "i8", n + 1)
    visibility = _read(directory, "visibility.u8", "u1", int(meta["visibilityBytes"]))
    with open(os.path.join(directory, "sentences.jsonl"), encoding="utf-8") as f:
        sentences = [json.loads(line) for line in f if line.strip()]
    if len(sentences) != int(meta["sentences"]):
        raise ValueError(f"{directory}: {len(sentences)} sentences in sentences.jsonl, meta.json says {meta['sentences']}")
    lengths = np.diff(offsets.astype(np.int64))
    if offsets[0] != 0 or offsets[-1] != total or (lengths <= 0).any():
        raise ValueError(f"{directory}: offsets.i32 is not an increasing partition of {total} tokens")
    if vis_offsets[0] != 0 or vis_offsets[-1] != visibility.size or not np.array_equal(np.diff(vis_offsets), (lengths * lengths + 7) // 8):
        raise ValueError(f"{directory}: visibility_offsets.i64 does not match ceil(L * L / 8) per example")
    return FeatureSplit(
        directory=directory,
        meta=meta,
        sentences=sentences,
        offsets=offsets,
        sentence=_read(directory, "sentence.i32", "i4", n),
        visibility=visibility,
        visibility_offsets=vis_offsets,
        **ragged,
    )
