"""NER fine-tuning in PyTorch on the injected examples that `rmbert features` writes.

  python -m rmbert_train.finetune --features .cache/features/medical-kg --backbone models/backbone --out DIR

Head: softmax (the paper's) or a linear-chain CRF (--head crf), both decoded with BIO-constrained Viterbi.
Optimiser: RecAdam (the paper's recall learning; --optimizer recadam) or AdamW. The learning rate warms up
over --warmup-fraction of the planned steps, then decays linearly to 0 at --epochs. After each epoch the
dev set is decoded and scored (strict micro F1 on characters: span and type must match); the best epoch's
weights are kept, and training stops after --patience epochs without a better dev F1. SIGTERM, SIGINT or
--deadline-minutes stop it early but cleanly: the epoch in progress is cut and scored, the best epoch so far
is written, and training.json's "stopped" says why (null for a run that ended by itself). The test split is
never read here.

Writes into --out: weights.safetensors (HF names; classifier.* and, with --head crf, crf.*), config.json
(a Hugging Face BertConfig with the labels), training.json (settings, per-epoch loss and dev scores, time),
parity.json (inputs and logits of a few dev examples, for `rmbert import --parity`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import env
from .crf import CRF, bio_constraints, viterbi
from .export import hf_config
from .features import FeatureSplit, load_split
from .model import BertConfig, BertModel, decays
from .recadam import Anneal, RecAdam
from .safetensors_io import load_weights, save_weights


# ---------------------------------------------------------------------------------------------------------
# Scoring (strict micro P/R/F1 on character spans)


def spans(tags: list[str]) -> set[tuple[int, int, str]]:
    """Entities of a BIO sequence: B-X starts one, I-X continues the same type; a stray I-X starts one."""
    out = set()
    start, kind = -1, None
    for i, tag in enumerate(tags + ["O"]):
        if tag.startswith("I-") and kind == tag[2:]:
            continue
        if kind is not None:
            out.add((start, i, kind))
            start, kind = -1, None
        if tag.startswith("B-") or tag.startswith("I-"):
            start, kind = i, tag[2:]
    return out


def score(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    tp = n_pred = n_gold = 0
    per_type: dict[str, list[int]] = {}
    for g, p in zip(gold, predicted):
        gs, ps = spans(g), spans(p)
        tp += len(gs & ps)
        n_pred += len(ps)
        n_gold += len(gs)
        for s in gs | ps:
            c = per_type.setdefault(s[2], [0, 0, 0])
            c[0] += s in gs and s in ps
            c[1] += s in ps
            c[2] += s in gs
    f1 = lambda t, np_, ng: 2 * t / (np_ + ng) if np_ + ng else 0.0  # noqa: E731
    return {
        "strictF1": 100 * f1(tp, n_pred, n_gold),
        "strictP": 100 * tp / n_pred if n_pred else 0.0,
        "strictR": 100 * tp / n_gold if n_gold else 0.0,
        "perType": {k: round(100 * f1(*v), 2) for k, v in sorted(per_type.items())},
    }


# ---------------------------------------------------------------------------------------------------------
# Model with its head


class Tagger(torch.nn.Module):
    def __init__(self, config: BertConfig, labels: list[str], head: str, dropout: float):
        super().__init__()
        self.labels = labels
        self.head = head
        self.bert_model = BertModel(config, num_labels=len(labels), dropout=dropout)
        if head == "crf":
            self.crf = CRF(labels)
        allowed, start = bio_constraints(labels)
        self.register_buffer("bio_trans", torch.where(allowed, 0.0, -10000.0), persistent=False)
        self.register_buffer("bio_start", torch.where(start, 0.0, -10000.0), persistent=False)

    def hf_state(self) -> dict[str, torch.Tensor]:
        state = dict(self.bert_model.state_dict())
        if self.head == "crf":
            state.update({f"crf.{k}": v for k, v in self.crf.state_dict().items()})
        return state

    def named_hf_parameters(self):
        yield from self.bert_model.named_parameters()
        if self.head == "crf":
            for k, v in self.crf.named_parameters():
                yield f"crf.{k}", v

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.bert_model.token_logits(batch["token_ids"], batch["soft_positions"], batch["segment_ids"], batch["mask"])

    @staticmethod
    def compact(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Original tokens (label >= 0) of each row, left-aligned: emissions [B, S, L], tags [B, S], mask [B, S]."""
        keep = labels >= 0
        counts = keep.sum(1)
        S = max(1, int(counts.max()))
        B, T, L = logits.shape
        order = torch.argsort((~keep).long() * T + torch.arange(T).unsqueeze(0), dim=1)[:, :S]
        emissions = logits.gather(1, order.unsqueeze(2).expand(B, S, L))
        tags = labels.gather(1, order)
        mask = torch.arange(S).unsqueeze(0) < counts.unsqueeze(1)
        return emissions, tags, mask

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        logits = self.logits(batch)
        labels = batch["label_ids"]
        n = int((labels >= 0).sum())
        if self.head == "crf":
            emissions, tags, mask = self.compact(logits, labels)
            keep = mask.any(1)
            return self.crf.nll(emissions[keep], tags[keep], mask[keep]) / n, n
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-1, reduction="sum") / n, n

    @torch.no_grad()
    def decode(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        """Tag ids of each example's original tokens, in order."""
        emissions, _tags, mask = self.compact(self.logits(batch), batch["label_ids"])
        if self.head == "crf":
            trans, start, end = self.crf.scores()
        else:
            trans, start, end = self.bio_trans, self.bio_start, torch.zeros(len(self.labels))
        out = [[] for _ in range(len(mask))]
        rows = [b for b in range(len(mask)) if mask[b].any()]
        if rows:
            paths = viterbi(emissions[rows], mask[rows], trans, start, end)
            for b, p in zip(rows, paths):
                out[b] = p
        return out


def to_torch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in batch.items()}


def length_batches(split: FeatureSplit, indices: np.ndarray, batch_size: int, max_tokens: int) -> list[list[int]]:
    """Batches of similar length: indices in the given order, grouped in pools of 50 batches sorted by length."""
    lengths = split.lengths
    out = []
    pool = batch_size * 50
    for p in range(0, len(indices), pool):
        chunk = sorted(indices[p : p + pool].tolist(), key=lambda i: lengths[i])
        current: list[int] = []
        longest = 0
        for i in chunk:
            nl = max(longest, int(lengths[i]))
            if current and (len(current) >= batch_size or nl * (len(current) + 1) > max_tokens):
                out.append(current)
                current, longest = [], 0
                nl = int(lengths[i])
            current.append(i)
            longest = nl
        if current:
            out.append(current)
    return out


@torch.no_grad()
def predict_chars(tagger: Tagger, split: FeatureSplit, batch_size: int = 64) -> list[list[str]]:
    """Character BIO tags per sentence: each original token's tag on its first character, I- on the rest."""
    tagger.eval()
    labels = tagger.labels
    predicted = [["O"] * len(s["text"]) for s in split.sentences]
    order = np.argsort(split.lengths)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size].tolist()
        paths = tagger.decode(to_torch(split.batch(idx)))
        for i, path in zip(idx, paths):
            lab = split.tokens("label_ids", i)
            cs = split.tokens("char_start", i)[lab >= 0]
            ce = split.tokens("char_end", i)[lab >= 0]
            tags = predicted[int(split.sentence[i])]
            for tag_id, a, b in zip(path, cs, ce):
                tag = labels[tag_id]
                tags[a] = tag
                inside = "O" if tag == "O" else f"I-{tag[2:]}"
                for c in range(a + 1, b):
                    tags[c] = inside
    tagger.train()
    return predicted


def evaluate(tagger: Tagger, split: FeatureSplit) -> dict:
    return score([s["labels"] for s in split.sentences], predict_chars(tagger, split))


# ---------------------------------------------------------------------------------------------------------
# Backbone loading


def read_backbone(path: Path) -> tuple[BertConfig, dict[str, torch.Tensor], str]:
    """An artifact directory (config.json with "model") or an export directory (Hugging Face config.json)."""
    config = json.loads((path / "config.json").read_text())
    if "model" in config:
        c = BertConfig.from_artifact(config["model"])
        name = config.get("name", path.name)
    else:
        c = BertConfig(config["vocab_size"], config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
                       config["intermediate_size"], config["max_position_embeddings"], config["type_vocab_size"], config["layer_norm_eps"])
        name = path.name
    weights = load_weights(path / "weights.safetensors")
    return c, weights, name


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rmbert_train.finetune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", type=Path, required=True, help="folder written by `rmbert features` (train/ and dev/ inside)")
    p.add_argument("--backbone", type=Path, required=True, help="backbone artifact or export folder (config.json + weights.safetensors)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--head", choices=["softmax", "crf"], default="crf")
    p.add_argument("--optimizer", choices=["recadam", "adamw"], default="recadam")
    p.add_argument("--lr", type=float, default=1e-4, help="peak learning rate of the encoder (default 1e-4)")
    p.add_argument("--head-lr", type=float, default=0.0, help="learning rate of the classifier and CRF (default: 10 x --lr with AdamW, --lr with RecAdam)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-batch-tokens", type=int, default=8192)
    p.add_argument("--epochs", type=int, default=10, help="planned epochs (the schedule decays to 0 there)")
    p.add_argument("--patience", type=int, default=3, help="stop after this many epochs without a better dev F1")
    p.add_argument("--warmup-fraction", type=float, default=0.06)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--anneal", choices=["sigmoid", "linear", "constant"], default="sigmoid")
    p.add_argument("--anneal-k", type=float, default=0.01)
    p.add_argument("--anneal-t0", type=float, default=1000)
    p.add_argument("--gamma", type=float, default=100.0, help="RecAdam quadratic-penalty coefficient (default 100; lr * gamma must stay well below 1)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--deadline-minutes", type=float, default=0,
                   help="stop cleanly after this many minutes (0: no deadline); SIGTERM does the same; "
                        "training.json records why in \"stopped\"")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training examples (tests)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    blas = env.prepare(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    say = lambda text: print(f"finetune: {text}", file=sys.stderr, flush=True)  # noqa: E731
    train = load_split(str(args.features / "train"))
    # Train variants (features --terms-variants K: the term list with different random drops), one per epoch in turn.
    variants = [train]
    while (args.features / f"train-{len(variants)}").exists():
        variants.append(load_split(str(args.features / f"train-{len(variants)}")))
    dev = load_split(str(args.features / "dev"))
    if any(len(v) != len(train) for v in variants):
        say(f"train variants of {args.features} hold different numbers of examples: {[len(v) for v in variants]}")
        return 2
    labels = train.labels
    config, weights, backbone_name = read_backbone(args.backbone)
    tagger = Tagger(config, labels, args.head, args.dropout)
    missing, _unexpected = tagger.bert_model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("classifier.") and not k.startswith("crf.")}, strict=False)
    missing = [m for m in missing if not m.startswith("classifier.")]
    if missing:
        say(f"backbone {args.backbone} lacks {missing[:5]}")
        return 2
    tagger.train()

    train_idx = np.arange(len(train)) if not args.train_limit else np.arange(min(args.train_limit, len(train)))
    steps_per_epoch = len(length_batches(train, train_idx, args.batch_size, args.max_batch_tokens))
    total_steps = steps_per_epoch * args.epochs
    warmup = max(1, int(args.warmup_fraction * total_steps))

    def schedule(step: int) -> float:  # step counts from 1
        if step <= warmup:
            return step / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    head_lr = args.head_lr or (args.lr * 10 if args.optimizer == "adamw" else args.lr)
    named = list(tagger.named_hf_parameters())
    if args.optimizer == "recadam":
        optimizer = RecAdam(named, lambda t: args.lr * schedule(t), Anneal(args.anneal, args.anneal_k, args.anneal_t0),
                            gamma=args.gamma, weight_decay=args.weight_decay)
        step_fn = optimizer.step
        set_lr = lambda step: None  # noqa: E731
    else:
        new = lambda n: n.startswith("classifier.") or n.startswith("crf.")  # noqa: E731
        groups = [
            {"params": [p for n, p in named if not new(n) and decays(n)], "weight_decay": args.weight_decay, "base": args.lr},
            {"params": [p for n, p in named if not new(n) and not decays(n)], "weight_decay": 0.0, "base": args.lr},
            {"params": [p for n, p in named if new(n)], "weight_decay": 0.0, "base": head_lr},
        ]
        optimizer = torch.optim.AdamW(groups, lr=args.lr, eps=1e-6)
        step_fn = optimizer.step

        def set_lr(step):
            for g in optimizer.param_groups:
                g["lr"] = g["base"] * schedule(step)

    say(f"{len(train_idx)} training examples ({len(variants)} variant(s)), {len(dev)} dev; {steps_per_epoch} steps per epoch; head {args.head}; "
        f"optimizer {args.optimizer}; backbone {backbone_name}; BLAS {blas.split(',')[0]}")
    history = []
    best = {"strictF1": -1.0}
    best_state = None
    step = 0
    started = time.monotonic()
    # SIGTERM/SIGINT (or --deadline-minutes) end the run early but cleanly: the epoch in progress is cut,
    # scored on dev like any other, and the best epoch so far is written with "stopped" saying why, so a
    # run on a shared machine can be bounded without losing what it learnt.
    stop = {"reason": None}

    def request_stop(signum, _frame):
        stop["reason"] = signal.Signals(signum).name
        say(f"{stop['reason']}: stopping after this batch (the best epoch so far is kept)")

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    deadline = started + args.deadline_minutes * 60 if args.deadline_minutes > 0 else None
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.monotonic()
        train = variants[(epoch - 1) % len(variants)]
        order = rng.permutation(train_idx)
        batches = length_batches(train, order, args.batch_size, args.max_batch_tokens)
        rng.shuffle(batches)
        losses, tokens = [], 0
        last_print = time.monotonic()
        for bi, idx in enumerate(batches):
            if deadline is not None and stop["reason"] is None and time.monotonic() > deadline:
                stop["reason"] = f"deadline of {args.deadline_minutes:g} minutes"
                say(f"{stop['reason']} reached: stopping (the best epoch so far is kept)")
            if stop["reason"] is not None:
                break
            step += 1
            set_lr(step)
            batch = to_torch(train.batch(idx))
            loss, n = tagger.loss(batch)
            tagger.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in named], args.clip)
            step_fn()
            losses.append(loss.item())
            tokens += int(batch["lengths"].sum())
            if time.monotonic() - last_print > 30:
                say(f"epoch {epoch} batch {bi + 1}/{len(batches)} loss {np.mean(losses[-50:]):.4f} "
                    f"{tokens / (time.monotonic() - epoch_start):,.0f} tok/s load {os.getloadavg()[0]:.2f}")
                last_print = time.monotonic()
        train_seconds = time.monotonic() - epoch_start
        scores = evaluate(tagger, dev)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, "dev": scores, "seconds": round(time.monotonic() - epoch_start, 1),
                 "trainTokensPerSecond": round(tokens / max(train_seconds, 1e-9)), "load": round(os.getloadavg()[0], 2)}
        if stop["reason"] is not None:
            entry["batches"] = f"{len(losses)}/{len(batches)}"

        if args.optimizer == "recadam":
            entry["distanceL1"] = optimizer.distance_l1()
        history.append(entry)
        improved = scores["strictF1"] > best["strictF1"]
        say(f"epoch {epoch}: loss {entry['loss'] or 0:.4f}, dev strict F1 {scores['strictF1']:.2f} "
            f"(P {scores['strictP']:.2f} R {scores['strictR']:.2f}){' best' if improved else ''}, {entry['seconds']} s")
        if improved:
            best = {**scores, "epoch": epoch}
            best_state = {k: v.detach().clone() for k, v in tagger.hf_state().items()}
        elif epoch - best["epoch"] >= args.patience:
            say(f"no better dev F1 for {args.patience} epochs: stopping")
            break
        if stop["reason"] is not None:
            break
    args.out.mkdir(parents=True, exist_ok=True)
    save_weights(best_state, args.out / "weights.safetensors")
    hf = hf_config(config)
    hf["architectures"] = ["BertForTokenClassification"]
    hf["id2label"] = {str(i): l for i, l in enumerate(labels)}
    hf["label2id"] = {l: i for i, l in enumerate(labels)}
    (args.out / "config.json").write_text(json.dumps(hf, indent=2, ensure_ascii=False) + "\n")
    write_parity(tagger, best_state, dev, args.out / "parity.json")
    summary = {
        "backbone": backbone_name,
        "features": str(args.features),
        "knowledge": train.meta.get("knowledge"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "bestEpoch": best["epoch"],
        "dev": {k: v for k, v in best.items() if k != "epoch"},
        "history": history,
        "trainMinutes": round((time.monotonic() - started) / 60, 2),
        "stopped": stop["reason"],
        "threads": args.threads,
        "labels": labels,
    }
    (args.out / "training.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    say(f"best dev strict F1 {best['strictF1']:.2f} at epoch {best['epoch']}; written to {args.out}")
    return 0


@torch.no_grad()
def write_parity(tagger: Tagger, state: dict, split: FeatureSplit, path: Path, count: int = 4) -> None:
    """Inputs and logits of a few examples (the longest first: they carry the most knowledge), for the check
    that the TypeScript forward pass of the imported artifact gives the same logits."""
    bert_state = {k: v for k, v in state.items() if not k.startswith("crf.")}
    tagger.bert_model.load_state_dict(bert_state, strict=False)
    tagger.eval()
    order = np.argsort(-split.lengths)[:count].tolist()
    examples = []
    for i in order:
        ids, pos, seg, _lab, vis = split.example(i)
        batch = to_torch(split.batch([i]))
        logits = tagger.logits(batch)[0]
        examples.append({"tokenIds": ids.tolist(), "softPositions": pos.tolist(), "segmentIds": seg.tolist(),
                         "visible": vis.astype(int).tolist(), "logits": logits.tolist()})
    path.write_text(json.dumps({"examples": examples}) + "\n")


if __name__ == "__main__":
    sys.exit(main())
