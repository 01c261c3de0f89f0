"""The CRF peer of benchmarks/crf.ts (benchmarks/peer/crf_peer.py): features at the sentence edges, and
training on toy sentences gives valid BIO predictions."""
import importlib.util
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("crf_peer", ROOT / "benchmarks" / "peer" / "crf_peer.py")
crf_peer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crf_peer)
PAD = crf_peer.PAD


def test_features_of_a_three_character_sentence():
    chars = ["头", "7", "A"]
    first = crf_peer.char_features(chars, 0)
    assert first == {
        "c-2": PAD,
        "c-1": PAD,
        "c0": "头",
        "c+1": "7",
        "c+2": "A",
        "b-2": PAD + PAD,
        "b-1": PAD + "头",
        "b0": "头7",
        "b+1": "7A",
        "t-1": PAD + PAD + "头",
        "t0": PAD + "头7",
        "BOS": True,
    }
    middle = crf_peer.char_features(chars, 1)
    assert middle["digit"] is True
    assert "latin" not in middle and "BOS" not in middle and "EOS" not in middle
    assert (middle["c-2"], middle["c-1"], middle["c+1"], middle["c+2"]) == (PAD, "头", "A", PAD)
    last = crf_peer.char_features(chars, 2)
    assert set(last) == {"c-2", "c-1", "c0", "c+1", "c+2", "b-2", "b-1", "b0", "b+1", "t-1", "t0", "latin", "EOS"}
    assert (last["c+1"], last["c+2"], last["b0"], last["b+1"], last["t0"]) == (PAD, PAD, "A" + PAD, PAD + PAD, "7A" + PAD)
    assert crf_peer.char_features(["x"], 0).keys() >= {"BOS", "EOS", "latin"}
    assert crf_peer.char_features(["３"], 0)["digit"] is True  # full-width digit
    assert crf_peer.char_features(["Ｂ"], 0)["latin"] is True  # full-width Latin letter


def _toy_sentences():
    parts = ["左", "右"]
    organs = [("腹", "部"), ("胸", "部"), ("头", "部")]
    signs = [("疼", "痛"), ("压", "痛")]
    out = []
    for p in parts:
        for o in organs:
            for s in signs:
                chars = ["患", "者", p, o[0], o[1], s[0], s[1], "。"]
                labels = ["O", "O", "B-BodyPart", "I-BodyPart", "I-BodyPart", "B-Symptom", "I-Symptom", "O"]
                out.append((chars, labels))
    out += [(["无", "发", "热"], ["O", "B-Symptom", "I-Symptom"]), (["查", "C", "T"], ["O", "B-Examine", "I-Examine"])]
    return out


def _valid_bio(tags):
    prev = "O"
    for t in tags:
        if not re.fullmatch(r"O|[BI]-\w+", t):
            return False
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        prev = t
    return True


def test_train_and_predict_toy_sentences(tmp_path):
    sentences = _toy_sentences()
    assert len(sentences) == 14
    sentences = sentences + sentences[:6]  # 20
    crf = crf_peer.train(sentences, max_iterations=50)
    predicted = crf_peer.predict(crf, sentences)
    assert [len(p) for p in predicted] == [len(c) for c, _ in sentences]
    assert all(_valid_bio(p) for p in predicted)
    correct = sum(p == l for p_seq, (_, l_seq) in zip(predicted, sentences) for p, l in zip(p_seq, l_seq))
    assert correct / sum(len(c) for c, _ in sentences) > 0.9

    # The command line: same predictions, written as JSON lines, and a result line on stdout.
    train_file = tmp_path / "train.jsonl"
    train_file.write_text("".join(json.dumps({"chars": c, "labels": l}, ensure_ascii=False) + "\n" for c, l in sentences), encoding="utf-8")
    test_file = tmp_path / "test.jsonl"
    test_file.write_text("".join(json.dumps({"chars": c}, ensure_ascii=False) + "\n" for c, _ in sentences[:5]), encoding="utf-8")
    out = tmp_path / "test.pred.jsonl"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        crf_peer.main(["--train", str(train_file), "--test", str(test_file), "--test-out", str(out), "--max-iterations", "50"])
    result = json.loads(stdout.getvalue().strip().splitlines()[-1])
    assert result["sentences"] == 20 and result["trainSeconds"] >= 0
    lines = [json.loads(line)["labels"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert lines == predicted[:5]
