"""Linear-chain CRF peer for benchmarks/crf.ts: the character-level NER model a hospital would train
instead of a BERT (sklearn-crfsuite, L-BFGS with elastic-net regularisation).

Input files are JSON lines, one sentence a line: {"chars": ["...", ...], "labels": ["O", "B-X", ...]}
(one BIO tag per character; "labels" is optional in the files to predict and ignored there).
Trains on --train, then writes the predicted BIO tags of --dev, --test and each --predict IN OUT (when
given) as JSON lines, one {"labels": [...]} per input sentence, in input order. Prints one JSON object on stdout at the end:
{"trainSeconds", "trainCpuSeconds", "iterations", "loss", "activeFeatures", "labels", "sentences", ...}.
Progress goes to stderr.

Features of character i (python-crfsuite "name:value" string features, each weight 1):
  c-2 .. c+2   the characters at offsets -2..+2
  b-2 .. b+1   the bigrams chars[i+k] + chars[i+k+1] for k = -2..1
  t-1, t0      the trigrams centred at i-1 (chars[i-2..i]) and at i (chars[i-1..i+1])
  digit, latin flags of the character itself (present only when true)
  BOS, EOS     present only on the first / last character
Positions outside the sentence read as the padding symbol PAD. Training and prediction are
deterministic (L-BFGS, no sampling); the CRF runs single-threaded.
"""
import argparse
import json
import sys
import time

import sklearn_crfsuite

PAD = "<PAD>"


def is_latin(ch):
    """ASCII or full-width Latin letter."""
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("\uff41" <= ch <= "\uff5a") or ("\uff21" <= ch <= "\uff3a")


def char_features(chars, i):
    """The feature dict of character i of `chars` (a list of strings)."""
    n = len(chars)

    def at(k):
        j = i + k
        return chars[j] if 0 <= j < n else PAD

    f = {}
    for k in range(-2, 3):
        f["c%+d" % k if k else "c0"] = at(k)
    for k in range(-2, 2):
        f["b%+d" % k if k else "b0"] = at(k) + at(k + 1)
    f["t-1"] = at(-2) + at(-1) + at(0)
    f["t0"] = at(-1) + at(0) + at(1)
    ch = chars[i]
    if ch.isdigit():
        f["digit"] = True
    if is_latin(ch):
        f["latin"] = True
    if i == 0:
        f["BOS"] = True
    if i == n - 1:
        f["EOS"] = True
    return f


def sentence_features(chars):
    return [char_features(chars, i) for i in range(len(chars))]


def read_jsonl(path, need_labels):
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            chars = obj.get("chars")
            if not isinstance(chars, list) or not chars:
                raise ValueError(f"{path}:{line_no}: 'chars' must be a non-empty list")
            labels = obj.get("labels")
            if need_labels:
                if not isinstance(labels, list) or len(labels) != len(chars):
                    raise ValueError(f"{path}:{line_no}: 'labels' must list one tag per character ({len(chars)})")
            out.append((chars, labels))
    return out


def make_crf(c1=0.05, c2=0.05, max_iterations=200):
    return sklearn_crfsuite.CRF(
        algorithm="lbfgs",
        c1=c1,
        c2=c2,
        max_iterations=max_iterations,
        all_possible_transitions=False,
    )


def train(sentences, c1=0.05, c2=0.05, max_iterations=200):
    """Trains a CRF on [(chars, labels), ...]; features are computed on the fly (not all held in memory)."""
    crf = make_crf(c1, c2, max_iterations)
    crf.fit((sentence_features(chars) for chars, _ in sentences), [labels for _, labels in sentences])
    return crf


def predict(crf, sentences):
    """Predicted BIO tags of [(chars, _), ...], one list per sentence."""
    return [list(crf.predict_single(sentence_features(chars))) for chars, _ in sentences]


def write_predictions(path, tags):
    with open(path, "w", encoding="utf-8") as f:
        for t in tags:
            f.write(json.dumps({"labels": t}, ensure_ascii=False) + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Train a linear-chain CRF (sklearn-crfsuite, L-BFGS) on character-level BIO data and "
        "predict dev/test (and more files with --predict). Features per character: characters at -2..+2, bigrams at -2..+1, trigrams "
        "centred at -1 and 0, digit/Latin flags, BOS/EOS markers. Prints one JSON line with the training "
        "seconds and model statistics on stdout; progress on stderr."
    )
    p.add_argument("--train", required=True, help='training sentences, JSON lines {"chars": [...], "labels": [BIO per char]}')
    p.add_argument("--dev", help="dev sentences (JSON lines, same format; labels optional)")
    p.add_argument("--dev-out", help="where to write the dev predictions (JSON lines {\"labels\": [...]}); required with --dev")
    p.add_argument("--test", help="test sentences (JSON lines, same format; labels optional)")
    p.add_argument("--test-out", help="where to write the test predictions; required with --test")
    p.add_argument(
        "--predict",
        nargs=2,
        action="append",
        default=[],
        metavar=("IN", "OUT"),
        help="also predict the sentences of IN (JSON lines) into OUT; repeatable",
    )
    p.add_argument("--c1", type=float, default=0.05, help="L1 regularisation coefficient (default 0.05)")
    p.add_argument("--c2", type=float, default=0.05, help="L2 regularisation coefficient (default 0.05)")
    p.add_argument("--max-iterations", type=int, default=200, help="L-BFGS iterations at most (default 200)")
    args = p.parse_args(argv)
    if bool(args.dev) != bool(args.dev_out):
        p.error("--dev and --dev-out go together")
    if bool(args.test) != bool(args.test_out):
        p.error("--test and --test-out go together")

    log = lambda msg: print(f"crf_peer: {msg}", file=sys.stderr, flush=True)  # noqa: E731
    train_set = read_jsonl(args.train, need_labels=True)
    chars = sum(len(c) for c, _ in train_set)
    log(f"training on {len(train_set)} sentences, {chars} characters (c1={args.c1}, c2={args.c2}, max {args.max_iterations} iterations)")
    wall0, cpu0 = time.perf_counter(), time.process_time()
    crf = train(train_set, args.c1, args.c2, args.max_iterations)
    train_seconds = time.perf_counter() - wall0
    train_cpu = time.process_time() - cpu0
    last = crf.training_log_.last_iteration if crf.training_log_ else {}
    log(f"trained in {train_seconds:.1f} s ({train_cpu:.1f} CPU-s), {last.get('num', '?')} iterations, loss {last.get('loss', '?')}")

    result = {
        "trainSeconds": train_seconds,
        "trainCpuSeconds": train_cpu,
        "iterations": last.get("num"),
        "loss": last.get("loss"),
        "activeFeatures": last.get("active_features"),
        "labels": sorted(crf.classes_),
        "sentences": len(train_set),
        "chars": chars,
        "params": {"algorithm": "lbfgs", "c1": args.c1, "c2": args.c2, "max_iterations": args.max_iterations, "all_possible_transitions": False},
    }
    jobs = [("dev", args.dev, args.dev_out), ("test", args.test, args.test_out)]
    jobs += [(f"predict{i + 1}", src, dst) for i, (src, dst) in enumerate(args.predict)]
    for name, src, dst in jobs:
        if not src:
            continue
        data = read_jsonl(src, need_labels=False)
        t0 = time.perf_counter()
        tags = predict(crf, data)
        seconds = time.perf_counter() - t0
        write_predictions(dst, tags)
        result[f"{name}PredictSeconds"] = seconds
        log(f"{name}: {len(data)} sentences predicted in {seconds:.1f} s -> {dst}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
