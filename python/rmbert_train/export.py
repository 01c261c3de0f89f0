"""From the pretraining checkpoint (pruned vocabulary) to a checkpoint `rmbert import` turns into an artifact,
and the held-out MLM figures of any backbone artifact on the same sentences.

  python -m rmbert_train.export backbone --commit-dir models/backbone-pretraining --out DIR
      writes DIR/weights.safetensors (Hugging Face names, the full 21,128-row vocabulary) and DIR/config.json
      (a Hugging Face BertConfig); then `node bin/rmbert.js import DIR/weights.safetensors --out ...`.
  python -m rmbert_train.export heldout --artifact models/backbone [--commit-dir ...]
      held-out MLM loss and top-1 of an artifact (or of the checkpoint) on the held-out set of
      `rmbert corpus`, over the pretraining vocabulary (vocab-used.json of `rmbert corpus`), so old and new backbones are compared on the same
      masked tokens and the same output space.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .model import BertConfig, BertModel
from .pretrain import Corpus, Vocab, held_out_eval
from .paths import ROOT
from .safetensors_io import load_weights, save_weights

WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"
MLM_BIAS = "cls.predictions.bias"


def expand_vocabulary(weights: dict[str, torch.Tensor], full_ids: np.ndarray, full_size: int, unk_full_id: int) -> tuple[dict, float]:
    """Compact-vocabulary weights -> full vocabulary. Rows for ids never seen get the [UNK] embedding and an
    MLM bias 10 below the lowest learned one (so the head never predicts them). Returns (weights, that bias)."""
    out = dict(weights)
    ids = torch.from_numpy(np.asarray(full_ids, dtype=np.int64))
    unk_compact = int(np.flatnonzero(np.asarray(full_ids) == unk_full_id)[0])
    words = weights[WORD_EMBEDDINGS]
    full = words[unk_compact].unsqueeze(0).repeat(full_size, 1)
    full[ids] = words
    out[WORD_EMBEDDINGS] = full
    low = float("nan")
    if MLM_BIAS in weights:
        bias = weights[MLM_BIAS]
        low = float(torch.floor(bias.min()) - 10)
        full_bias = torch.full((full_size,), low)
        full_bias[ids] = bias
        out[MLM_BIAS] = full_bias
    return out, low


def hf_config(config: BertConfig) -> dict:
    return {
        "architectures": ["BertForMaskedLM"],
        "model_type": "bert",
        "hidden_act": "gelu",
        "position_embedding_type": "absolute",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
    }


def read_checkpoint(commit_dir: Path) -> tuple[BertConfig, dict, dict, np.ndarray]:
    state = json.loads((commit_dir / "state.json").read_text())
    config = BertConfig(**state["config"])
    weights = load_weights(commit_dir / "weights.safetensors")
    full_ids = np.asarray(json.loads((commit_dir / "vocab-ids.json").read_text()), dtype=np.int64)
    return config, weights, state, full_ids


def export_backbone(commit_dir: Path, out: Path, full_size: int, unk_full_id: int) -> dict:
    config, weights, state, full_ids = read_checkpoint(commit_dir)
    full, low = expand_vocabulary(weights, full_ids, full_size, unk_full_id)
    full_config = BertConfig(**{**state["config"], "vocab_size": full_size})
    out.mkdir(parents=True, exist_ok=True)
    save_weights(full, out / "weights.safetensors")
    (out / "config.json").write_text(json.dumps(hf_config(full_config), indent=2) + "\n")
    summary = {
        "tokensSeen": state["tokens_seen"],
        "steps": state["total_steps"],
        "trainHours": round(state["train_seconds"] / 3600, 2),
        "vocabularyRows": len(full_ids),
        "unseenTokenBias": low,
        "heldOut": state["held_out"][-1] if state["held_out"] else None,
    }
    (out / "pretraining.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def artifact_model(artifact: Path) -> BertModel:
    config = json.loads((artifact / "config.json").read_text())
    c = BertConfig.from_artifact(config["model"])
    weights = load_weights(artifact / "weights.safetensors")
    model = BertModel(c, mlm_head=MLM_BIAS in weights, dropout=0.0)
    missing, _unexpected = model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("classifier.")}, strict=False)
    if missing:
        raise ValueError(f"{artifact}: weights lack {missing[:5]}")
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rmbert_train.export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("backbone", help="export the pretraining checkpoint for `rmbert import`")
    b.add_argument("--commit-dir", type=Path, default=ROOT / "models/backbone-pretraining")
    b.add_argument("--corpus", type=Path, default=ROOT / ".cache/corpus", help="folder written by `rmbert corpus` (for the vocabulary size and [UNK])")
    b.add_argument("--out", type=Path, required=True)
    h = sub.add_parser("heldout", help="held-out MLM loss and top-1 of a backbone artifact or of the checkpoint")
    h.add_argument("--artifact", type=Path, help="artifact directory (config.json + weights.safetensors)")
    h.add_argument("--commit-dir", type=Path, default=ROOT / "models/backbone-pretraining", help="the checkpoint, when no --artifact")
    h.add_argument("--corpus", type=Path, default=ROOT / ".cache/corpus")
    u = sub.add_parser("unigram", help="held-out loss and top-1 of unigram frequencies of the general corpus (the floor a backbone must beat)")
    u.add_argument("--corpus", type=Path, default=ROOT / ".cache/corpus")
    args = p.parse_args(argv)
    meta = json.loads((args.corpus / "general.json").read_text())
    if args.command == "unigram":
        print(json.dumps(unigram_eval(args.corpus, meta)))
        return 0
    if args.command == "backbone":
        summary = export_backbone(args.commit_dir, args.out, meta["vocabSize"], meta["specials"]["unk"])
        print(json.dumps(summary, indent=2))
        return 0
    # The output space is the checkpoint's vocabulary (its embedding rows are in that order).
    vocab_file = args.commit_dir / "vocab-ids.json"
    if not vocab_file.exists():
        vocab_file = args.corpus / "vocab-used.json"
    vocab = Vocab(json.loads(vocab_file.read_text()), meta["vocabSize"], meta["specials"])
    raw = np.fromfile(args.corpus / "heldout.i32", dtype="<i4").reshape(-1, meta["seqLen"])
    if args.artifact:
        model = artifact_model(args.artifact)
        # Full-vocabulary model: feed full ids, score over the pretraining vocabulary's ids.
        compact = vocab.to_compact[raw]
        compact[compact < 0] = vocab.special["unk"]
        result = held_out_eval(model, Corpus(compact.astype(np.int64), meta["specials"], meta["seqLen"]), vocab, full_vocabulary=True)
    else:
        config, weights, _state, _ids = read_checkpoint(args.commit_dir)
        model = BertModel(config, mlm_head=True, dropout=0.0)
        model.load_state_dict(weights)
        compact = vocab.to_compact[raw]
        compact[compact < 0] = vocab.special["unk"]
        result = held_out_eval(model, Corpus(compact.astype(np.int64), meta["specials"], meta["seqLen"]), vocab)
    print(json.dumps(result))
    return 0


def unigram_eval(corpus: Path, meta: dict) -> dict:
    """The held-out masked tokens of held_out_eval scored by add-0.5 unigram frequencies of the general corpus."""
    from .pretrain import HELD_OUT_SEED, mask_rows

    vocab = Vocab(json.loads((corpus / "vocab-used.json").read_text()), meta["vocabSize"], meta["specials"])
    general = np.fromfile(corpus / "general.i32", dtype="<i4")
    counts = np.bincount(vocab.to_compact[general], minlength=len(vocab)).astype(np.float64) + 0.5
    for k in ("cls", "sep", "pad", "mask"):
        counts[vocab.special[k]] = 0.5
    p = counts / counts.sum()
    raw = np.fromfile(corpus / "heldout.i32", dtype="<i4").reshape(-1, meta["seqLen"])
    rows = vocab.to_compact[raw]
    rows[rows < 0] = vocab.special["unk"]
    _inputs, _flat, targets = mask_rows(rows.astype(np.int64), vocab, np.random.default_rng(HELD_OUT_SEED), 0.15, all_mask=True)
    targets = targets[targets != vocab.special["unk"]]
    return {"loss": float(-np.log(p[targets]).mean()), "top1": float((targets == p.argmax()).mean()), "masked": int(len(targets))}

if __name__ == "__main__":
    sys.exit(main())
