"""Masked-LM pretraining of the backbone on the corpora that `rmbert corpus` writes, resumable across sessions.

The vocabulary is pruned for training: the model holds embeddings for the ids the corpora use
(vocab-used.json, about 11 k of bert-base-chinese's 21,128) and `export` expands them back to the full
vocabulary (ids never seen get the [UNK] row and an MLM bias far below every learned one), so the
vocabulary file and the tokenizer contract do not change.

Two kinds of checkpoint:
- local (--out, not committed): fp32 weights, AdamW moments and the state; resuming from it continues the
  run exactly (same data order, same masking per step).
- committed (--commit-dir, small: fp16 weights in the pruned vocabulary, the state, the log): a new session
  resumes from it with fresh AdamW moments, re-warmed over --rewarm steps. Only weights travel between
  sessions, so the repository grows by one fp16 copy of the model per session.

Masking as in BERT and `rmbert pretrain`: 15 % of the non-special tokens of each row (rounded, at least
one); of those 80 % [MASK], 10 % a random corpus token, 10 % kept; loss on the chosen positions only, the
MLM head computed only there. Data order: a seeded permutation of the rows per epoch; masking seeded by
(seed, phase, step). The learning rate warms up linearly, then decays linearly to --final-lr-fraction of the
peak at --horizon-tokens, a fixed horizon, so that runs split across sessions follow one schedule.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import env
from .model import MASK_NEGATIVE, BertConfig, BertModel, decays
from .paths import ROOT
from .safetensors_io import load_weights, save_weights

HELD_OUT_SEED = 20261207


@dataclass
class Corpus:
    rows: np.ndarray  # [N, T] compact ids (int64)
    specials: dict
    seq_len: int

    @staticmethod
    def read(directory: Path, name: str, to_compact: np.ndarray) -> "Corpus":
        meta = json.loads((directory / f"{name}.json").read_text())
        raw = np.fromfile(directory / f"{name}.i32", dtype="<i4").reshape(meta["rows"], meta["seqLen"])
        compact = to_compact[raw]
        return Corpus(rows=compact.astype(np.int64), specials=meta["specials"], seq_len=meta["seqLen"])


@dataclass
class State:
    phase: str = "general"
    step: int = 0  # steps in this phase
    total_steps: int = 0
    tokens_seen: int = 0  # all phases
    phase_tokens: int = 0
    train_seconds: float = 0.0
    seed: int = 1
    config: dict = field(default_factory=dict)
    hyper: dict = field(default_factory=dict)
    sessions: list = field(default_factory=list)
    held_out: list = field(default_factory=list)


class Vocab:
    """Full <-> compact id maps over the ids the corpora use."""

    def __init__(self, used_full_ids: list[int], full_size: int, specials: dict):
        self.full_ids = np.asarray(used_full_ids, dtype=np.int64)
        self.to_compact = np.full(full_size, -1, dtype=np.int64)
        self.to_compact[self.full_ids] = np.arange(len(self.full_ids))
        self.full_size = full_size
        self.special = {k: int(self.to_compact[v]) for k, v in specials.items()}
        missing = [k for k, v in self.special.items() if v < 0]
        if missing:
            raise ValueError(f"vocab-used.json lacks the special tokens {missing}")
        special_set = set(self.special.values()) - {self.special["unk"]}
        self.replaceable = np.array([i for i in range(len(self.full_ids)) if i not in special_set], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.full_ids)


def mask_rows(rows: np.ndarray, vocab: Vocab, rng: np.random.Generator, probability: float, all_mask: bool = False):
    """BERT masking of [B, T] compact ids. Returns (inputs, flat positions, targets)."""
    s = vocab.special
    inputs = rows.copy()
    candidates = (rows != s["cls"]) & (rows != s["sep"]) & (rows != s["pad"])
    B, T = rows.shape
    positions = []
    for b in range(B):
        cand = np.flatnonzero(candidates[b])
        if len(cand) == 0:
            continue
        count = max(1, int(round(len(cand) * probability)))
        chosen = np.sort(rng.choice(cand, size=count, replace=False))
        positions.append(b * T + chosen)
    flat = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    targets = rows.reshape(-1)[flat].copy()
    view = inputs.reshape(-1)
    if all_mask:
        view[flat] = s["mask"]
    else:
        r = rng.random(len(flat))
        view[flat[r < 0.8]] = s["mask"]
        swap = flat[(r >= 0.8) & (r < 0.9)]
        view[swap] = vocab.replaceable[rng.integers(0, len(vocab.replaceable), size=len(swap))]
    return inputs, flat, targets


def mlm_loss(model: BertModel, inputs: torch.Tensor, flat: torch.Tensor, targets: torch.Tensor, reduction="mean"):
    hidden = model.encode(inputs)
    rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, flat)
    logits = model.mlm_logits(rows)
    return F.cross_entropy(logits, targets, reduction=reduction), logits


def padding_mask(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Additive mask [B, T, T] that hides padding columns: held-out rows are single padded sentences, while
    training rows are packed and never contain padding, so the model must not attend to it."""
    hidden = (ids == pad_id).float() * MASK_NEGATIVE
    return hidden.unsqueeze(1).expand(ids.shape[0], ids.shape[1], ids.shape[1])


@torch.no_grad()
def held_out_eval(model: BertModel, held_out: Corpus, vocab: Vocab, full_vocabulary: bool = False) -> dict:
    """MLM loss (nats) and top-1 over the held-out sentences, 15 % of tokens masked with a fixed seed.
    Rows are in the pretraining vocabulary's compact ids; with `full_vocabulary` the model is an exported
    one (all 21,128 ids): it is fed the full ids and scored over the same compact output space."""
    was_training = model.training
    model.eval()
    rng = np.random.default_rng(HELD_OUT_SEED)
    inputs, flat, targets = mask_rows(held_out.rows, vocab, rng, 0.15, all_mask=True)
    pad = vocab.special["pad"]
    vocab_subset = None
    if full_vocabulary:
        inputs = vocab.full_ids[inputs]
        pad = int(vocab.full_ids[pad])
        vocab_subset = torch.from_numpy(vocab.full_ids)
    known = targets != vocab.special["unk"]
    total_loss = 0.0
    correct = 0
    count = 0
    B, T = inputs.shape
    for start in range(0, B, 64):
        stop = min(B, start + 64)
        sel = (flat >= start * T) & (flat < stop * T) & known
        if not sel.any():
            continue
        x = torch.from_numpy(inputs[start:stop])
        pos = torch.from_numpy(flat[sel] - start * T)
        tgt = torch.from_numpy(targets[sel])
        hidden = model.encode(x, mask=padding_mask(x, pad))
        rows = hidden.reshape(-1, hidden.shape[-1]).index_select(0, pos)
        logits = model.mlm_logits(rows, vocab_subset)
        total_loss += F.cross_entropy(logits, tgt, reduction="sum").item()
        correct += (logits.argmax(-1) == tgt).sum().item()
        count += len(tgt)
    model.train(was_training)
    return {"loss": total_loss / count, "top1": correct / count, "masked": count}


class RowOrder:
    """Which corpus rows examples i..i+n of a phase are: a seeded permutation of the rows per epoch."""

    def __init__(self, rows: int, seed: int, phase: int):
        self.n = rows
        self.seed = seed
        self.phase = phase
        self.cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self.cache:
            if len(self.cache) > 2:
                self.cache.clear()
            self.cache[epoch] = np.random.default_rng([self.seed, 7919, epoch, self.phase]).permutation(self.n)
        return self.cache[epoch]

    def rows(self, start: int, count: int) -> np.ndarray:
        return np.array([self.permutation(e // self.n)[e % self.n] for e in range(start, start + count)], dtype=np.int64)


def learning_rate(h: dict, step: int, phase_tokens: int, rewarm_from: int | None) -> float:
    peak = h["lr"]
    lr = peak * max(h["final_lr_fraction"], 1 - phase_tokens / h["horizon_tokens"] * (1 - h["final_lr_fraction"]))
    if step < h["warmup"]:
        lr *= (step + 1) / h["warmup"]
    if rewarm_from is not None and step - rewarm_from < h["rewarm"]:
        lr *= (step - rewarm_from + 1) / h["rewarm"]
    return lr


def make_optimizer(model: BertModel, h: dict) -> torch.optim.AdamW:
    groups = [
        {"params": [p for n, p in model.named_parameters() if decays(n)], "weight_decay": h["weight_decay"]},
        {"params": [p for n, p in model.named_parameters() if not decays(n)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=h["lr"], betas=(0.9, 0.999), eps=1e-6)


def load_state(path: Path) -> State:
    return State(**json.loads(path.read_text()))


def save_committed(commit_dir: Path, model: BertModel, state: State, vocab: Vocab) -> None:
    commit_dir.mkdir(parents=True, exist_ok=True)
    tmp = commit_dir / "weights.safetensors.tmp"
    save_weights(model.state_dict(), tmp, dtype=torch.float16)
    tmp.replace(commit_dir / "weights.safetensors")
    (commit_dir / "vocab-ids.json").write_text(json.dumps(vocab.full_ids.tolist()) + "\n")
    tmp_state = commit_dir / "state.json.tmp"
    tmp_state.write_text(json.dumps(asdict(state), indent=1) + "\n")
    tmp_state.replace(commit_dir / "state.json")


def save_local(out: Path, model: BertModel, optimizer, state: State) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "checkpoint.pt.tmp"
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": asdict(state)}, tmp)
    tmp.replace(out / "checkpoint.pt")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m rmbert_train.pretrain",
        description="Masked-LM pretraining of the backbone (PyTorch), resumable across sessions.",
    )
    p.add_argument("--corpus", type=Path, default=ROOT / ".cache/corpus", help="folder written by `rmbert corpus` (default .cache/corpus)")
    p.add_argument("--phase", choices=["general", "medical-train"], default="general",
                   help="general: the general-domain corpus; medical-train: the task-adaptive phase on the medical TRAINING split's text")
    p.add_argument("--out", type=Path, default=ROOT / ".cache/pretrain-torch", help="local checkpoints (exact resume), not committed")
    p.add_argument("--commit-dir", type=Path, default=ROOT / "models/backbone-pretraining",
                   help="committed checkpoint: fp16 weights, state.json, log.jsonl (default models/backbone-pretraining)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=7e-4, help="peak learning rate (default 7e-4)")
    p.add_argument("--warmup", type=int, default=1000, help="warmup steps at the start of a phase (default 1000)")
    p.add_argument("--rewarm", type=int, default=200, help="warmup steps when resuming with fresh AdamW moments (default 200)")
    p.add_argument("--horizon-tokens", type=float, default=80e6,
                   help="tokens of this phase at which the learning rate reaches its floor (default 80e6)")
    p.add_argument("--final-lr-fraction", type=float, default=0.05, help="learning-rate floor as a fraction of the peak (default 0.05)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--clip", type=float, default=1.0, help="global gradient-norm clip (default 1.0)")
    p.add_argument("--mask-probability", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1,
                   help="intra-op threads (default 1); the file OUT/threads, when present, overrides it while running")
    p.add_argument("--max-minutes", type=float, default=60.0, help="stop after this many minutes of this run (default 60)")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps of this run (0: no limit)")
    p.add_argument("--checkpoint-minutes", type=float, default=10.0)
    p.add_argument("--eval-minutes", type=float, default=15.0, help="held-out evaluation interval (default 15)")
    p.add_argument("--log-seconds", type=float, default=60.0, help="log line interval (default 60)")
    p.add_argument("--fresh", action="store_true", help="ignore existing checkpoints and start from random weights")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    blas = env.prepare(args.threads)
    log_file = args.commit_dir / "log.jsonl"
    args.commit_dir.mkdir(parents=True, exist_ok=True)

    def log(record: dict) -> None:
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
        with open(log_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def say(text: str) -> None:
        print(f"pretrain: {text}", file=sys.stderr, flush=True)

    if not (args.corpus / "vocab-used.json").exists():
        say(f"{args.corpus}/vocab-used.json not found: run `node bin/rmbert.js corpus --out {args.corpus}` first")
        return 2
    meta = json.loads((args.corpus / "general.json").read_text())
    # The checkpoint's own vocabulary wins: its embedding rows are in that order. A corpus rebuilt since
    # (other sources, other cleaning) may hold ids it lacks; those become [UNK] and are counted.
    saved_vocab = args.commit_dir / "vocab-ids.json"
    vocab_ids = json.loads((saved_vocab if saved_vocab.exists() and not args.fresh else args.corpus / "vocab-used.json").read_text())
    vocab = Vocab(vocab_ids, meta["vocabSize"], meta["specials"])
    data = Corpus.read(args.corpus, args.phase, vocab.to_compact)
    outside = int((data.rows < 0).sum())
    if outside:
        say(f"{outside} corpus tokens have ids outside the checkpoint's vocabulary: trained as [UNK]")
        data.rows[data.rows < 0] = vocab.special["unk"]
    held_out_full = np.fromfile(args.corpus / "heldout.i32", dtype="<i4").reshape(-1, meta["seqLen"])
    held_compact = vocab.to_compact[held_out_full]
    held_compact[held_compact < 0] = vocab.special["unk"]  # ids outside the training vocabulary cannot be targets
    held_out = Corpus(rows=held_compact.astype(np.int64), specials=meta["specials"], seq_len=meta["seqLen"])

    config = BertConfig(len(vocab), args.hidden, args.layers, args.heads, args.intermediate)
    hyper = {k: getattr(args, k) for k in ("batch_size", "lr", "warmup", "rewarm", "horizon_tokens", "final_lr_fraction",
                                           "weight_decay", "clip", "mask_probability")}
    model = BertModel(config, mlm_head=True, dropout=0.0)
    state = State(phase=args.phase, seed=args.seed, config=asdict(config), hyper=hyper)
    optimizer = None
    rewarm_from = None
    local = args.out / "checkpoint.pt"
    committed = args.commit_dir / "state.json"
    if not args.fresh and local.exists():
        saved = torch.load(local)
        local_state = State(**saved["state"])
        committed_state = load_state(committed) if committed.exists() else None
        if committed_state is None or committed_state.total_steps <= local_state.total_steps:
            model.load_state_dict(saved["model"])
            state = local_state
            optimizer = make_optimizer(model, hyper)
            optimizer.load_state_dict(saved["optimizer"])
            say(f"resumed exactly from {local} at phase {state.phase} step {state.step} ({state.tokens_seen:,} tokens)")
    if optimizer is None and not args.fresh and committed.exists():
        state = load_state(committed)
        weights = load_weights(args.commit_dir / "weights.safetensors")
        model.load_state_dict({k: v.float() for k, v in weights.items()})
        rewarm_from = state.step
        say(f"resumed from the committed checkpoint {args.commit_dir} at phase {state.phase} step {state.step} "
            f"({state.tokens_seen:,} tokens), fresh AdamW moments, re-warmed over {args.rewarm} steps")
    if optimizer is None:
        if not (args.fresh or committed.exists()):
            torch.manual_seed(args.seed)
            model = BertModel(config, mlm_head=True, dropout=0.0)
            say("started from random weights")
        optimizer = make_optimizer(model, hyper)
    if asdict(config) != state.config:
        say(f"the checkpoint's model config {state.config} differs from the options' {asdict(config)}")
        return 2
    if state.phase != args.phase:
        say(f"starting phase {args.phase} after {state.phase} ({state.tokens_seen:,} tokens so far)")
        state.phase = args.phase
        state.step = 0
        state.phase_tokens = 0
        rewarm_from = None
    state.hyper = hyper
    model.train()
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "from_step": state.total_steps,
               "threads": args.threads, "blas": blas, "phase": args.phase}
    state.sessions.append(session)
    params = sum(p.numel() for p in model.parameters())
    say(f"{params:,} parameters ({len(vocab):,} vocabulary rows), {len(data.rows):,} sequences of {data.seq_len}; BLAS: {blas}")
    log({"event": "start", "phase": args.phase, "total_steps": state.total_steps, "tokens_seen": state.tokens_seen,
         "params": params, "threads": args.threads, "load": os.getloadavg()[0]})

    stop = {"requested": False}

    def on_signal(signum, _frame):
        stop["requested"] = True
        say(f"signal {signum}: checkpointing and stopping after this step")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    B, T = args.batch_size, data.seq_len
    N = len(data.rows)
    run_start = time.monotonic()
    last_ckpt = last_eval = last_log = run_start
    window_losses: list[float] = []
    window_tokens = 0
    window_start = run_start
    threads_file = args.out / "threads"
    threads_now = args.threads
    order = RowOrder(N, args.seed, 0 if args.phase == "general" else 1)
    run_steps = 0

    def evaluate_and_log():
        result = held_out_eval(model, held_out, vocab)
        entry = {"total_steps": state.total_steps, "tokens_seen": state.tokens_seen, **result}
        state.held_out.append(entry)
        log({"event": "held-out", **entry})
        say(f"held-out MLM loss {result['loss']:.3f} nats, top-1 {100 * result['top1']:.1f} % "
            f"({result['masked']} masked tokens) at {state.tokens_seen:,} tokens")

    if state.total_steps == 0:
        evaluate_and_log()
    while not stop["requested"]:
        elapsed = time.monotonic() - run_start
        if elapsed >= args.max_minutes * 60 or (args.max_steps and run_steps >= args.max_steps):
            break
        idx = order.rows(state.step * B, B)
        rng = np.random.default_rng([args.seed, 104729, state.step, 0 if args.phase == "general" else 1])
        inputs, flat, targets = mask_rows(data.rows[idx], vocab, rng, args.mask_probability)
        lr = learning_rate(hyper, state.step, state.phase_tokens, rewarm_from)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, _ = mlm_loss(model, torch.from_numpy(inputs), torch.from_numpy(flat), torch.from_numpy(targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        value = loss.item()
        if not math.isfinite(value):
            say(f"diverged at step {state.step}: loss {value}")
            return 1
        tokens = B * T
        state.step += 1
        state.total_steps += 1
        state.tokens_seen += tokens
        state.phase_tokens += tokens
        run_steps += 1
        window_losses.append(value)
        window_tokens += tokens
        now = time.monotonic()
        if now - last_log >= args.log_seconds:
            tps = window_tokens / (now - window_start)
            state.train_seconds += now - window_start
            log({"event": "train", "phase": args.phase, "total_steps": state.total_steps, "tokens_seen": state.tokens_seen,
                 "loss": float(np.mean(window_losses)), "lr": lr, "tokens_per_second": round(tps, 1),
                 "threads": threads_now, "load": round(os.getloadavg()[0], 2)})
            say(f"step {state.total_steps} | loss {np.mean(window_losses):.3f} | lr {lr:.2e} | {tps:,.0f} tok/s | "
                f"{state.tokens_seen / 1e6:.2f} M tokens | load {os.getloadavg()[0]:.2f}")
            window_losses, window_tokens, window_start, last_log = [], 0, now, now
            if threads_file.exists():
                try:
                    wanted = int(threads_file.read_text().strip())
                    if wanted != threads_now and wanted >= 1:
                        torch.set_num_threads(wanted)
                        threads_now = wanted
                except ValueError:
                    pass
        if now - last_eval >= args.eval_minutes * 60:
            evaluate_and_log()
            last_eval = now
        if now - last_ckpt >= args.checkpoint_minutes * 60:
            save_local(args.out, model, optimizer, state)
            save_committed(args.commit_dir, model, state, vocab)
            last_ckpt = now
    if window_tokens:
        state.train_seconds += time.monotonic() - window_start
    evaluate_and_log()
    session["ended"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    session["to_step"] = state.total_steps
    save_local(args.out, model, optimizer, state)
    save_committed(args.commit_dir, model, state, vocab)
    log({"event": "stop", "total_steps": state.total_steps, "tokens_seen": state.tokens_seen})
    say(f"stopped at step {state.total_steps} ({state.tokens_seen:,} tokens); checkpoint in {args.commit_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
