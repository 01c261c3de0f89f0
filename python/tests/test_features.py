"""The reader of `rmbert features` output, on a small medical dev export written by the TypeScript CLI
(the one implementation of the sentence tree)."""
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rmbert_train.features import MASK_NEGATIVE, load_split

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 120


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    out = tmp_path_factory.mktemp("features")
    done = subprocess.run(
        ["node", "--import", "tsx", "src/cli/main.ts", "features", "--corpus", "medical", "--splits", "dev",
         "--limit", str(LIMIT), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "dev: 120 sentences" in done.stderr
    return load_split(str(out / "dev"))


def originals(split, i):
    """Original tokens of example i: those with a character span, plus [CLS] first and [SEP] last."""
    start = split.tokens("char_start", i)
    keep = start >= 0
    keep[0] = keep[-1] = True
    return keep


def test_shapes_and_offsets(split):
    meta = split.meta
    n, total = meta["examples"], meta["tokens"]
    assert meta["format"] == "rmbert-features/1" and meta["corpus"] == "medical" and meta["split"] == "dev"
    assert meta["sentences"] == LIMIT == len(split.sentences)
    assert meta["knowledge"]["enabled"] and meta["knowledge"]["kgFile"] == "Medical.spo"
    assert len(split) == n >= LIMIT and split.offsets.shape == (n + 1,) and split.visibility_offsets.shape == (n + 1,)
    for name in ("token_ids", "soft_positions", "segment_ids", "label_ids", "char_start", "char_end"):
        assert getattr(split, name).shape == (total,) and getattr(split, name).dtype == np.int32
    assert split.offsets[0] == 0 and split.offsets[-1] == total
    assert split.lengths.max() == meta["maxTokens"] and split.lengths.sum() == total
    assert np.all(np.diff(split.sentence) >= 0) and split.sentence[-1] == LIMIT - 1
    assert split.visibility.size == split.visibility_offsets[-1]
    for i in range(n):
        ids = split.tokens("token_ids", i)
        assert ids[0] == meta["clsId"] and ids[-1] == meta["sepId"]
    assert meta["stats"]["injectedTokens"] == int(((split.char_start < 0).sum()) - 2 * n)


def test_labels_match_sentences(split):
    labels = split.labels
    for i in range(len(split)):
        tags = split.sentences[split.sentence[i]]["labels"]
        start, ids = split.tokens("char_start", i), split.tokens("label_ids", i)
        keep = originals(split, i)
        assert np.all(ids[~keep] == -1) and ids[0] == -1 and ids[-1] == -1
        for s, y in zip(start[start >= 0], ids[start >= 0]):
            assert labels[y] == tags[s]


def test_visibility(split):
    injected_examples = 0
    for i in range(len(split)):
        token_ids, soft, seg, label_ids, visible = split.example(i)
        n = len(token_ids)
        assert visible.shape == (n, n) and visible.dtype == bool
        assert np.array_equal(visible, visible.T), "the visibility matrix is symmetric"
        assert visible.diagonal().all()
        keep = originals(split, i)
        assert visible[np.ix_(keep, keep)].all(), "original tokens see each other"
        if (~keep).any():
            injected_examples += 1
            # An injected token sees its own branch and its name only, never [CLS] or [SEP].
            assert not visible[~keep][:, [0, n - 1]].any()
            # Branches continue the soft positions after their name.
            assert soft[~keep].min() >= 1
    assert injected_examples > 0


def test_batch_pads(split):
    order = np.argsort(split.lengths)
    indices = [int(order[0]), int(order[-1]), int(order[len(order) // 2])]
    b = split.batch(indices)
    B, T = 3, int(split.lengths[indices].max())
    for name in ("token_ids", "soft_positions", "segment_ids", "label_ids"):
        assert b[name].shape == (B, T) and b[name].dtype == np.int64
    assert b["mask"].shape == (B, T, T) and b["mask"].dtype == np.float32
    assert list(b["lengths"]) == [int(split.lengths[i]) for i in indices]
    for row, i in enumerate(indices):
        n = int(split.lengths[i])
        token_ids, soft, seg, label_ids, visible = split.example(i)
        assert np.array_equal(b["token_ids"][row, :n], token_ids) and np.all(b["token_ids"][row, n:] == split.meta["padId"])
        assert np.array_equal(b["label_ids"][row, :n], label_ids) and np.all(b["label_ids"][row, n:] == -1)
        assert np.array_equal(b["soft_positions"][row, :n], soft)
        assert np.array_equal(b["mask"][row, :n, :n] == 0, visible)
        assert set(np.unique(b["mask"][row])) <= {0.0, MASK_NEGATIVE}
        assert np.all(b["mask"][row, :, n:] == MASK_NEGATIVE), "padding columns are never visible"
        # Padding rows see column 0 only, as writeAdditiveMask writes them (softmax stays finite).
        assert np.all(b["mask"][row, n:, 0] == 0) and np.all(b["mask"][row, n:, 1:] == MASK_NEGATIVE)
    assert T > int(split.lengths[indices[0]]), "the shortest example is padded"
    assert np.array_equal(split.batch(indices, pad_id=7)["token_ids"][0, int(split.lengths[indices[0]]):], np.full(T - int(split.lengths[indices[0]]), 7))
