"""Fine-tuning pieces, and the whole path from the TypeScript features to an imported artifact whose
TensorFlow.js logits match PyTorch's (`rmbert import --parity`)."""
import json
import subprocess
from pathlib import Path

import pytest
import torch

from rmbert_train import finetune
from rmbert_train.export import hf_config
from rmbert_train.model import BertConfig, BertModel
from rmbert_train.safetensors_io import save_weights

ROOT = Path(__file__).resolve().parents[2]


def test_spans_and_strict_score():
    assert finetune.spans(["B-X", "I-X", "O", "I-Y", "B-X", "B-X"]) == {(0, 2, "X"), (3, 4, "Y"), (4, 5, "X"), (5, 6, "X")}
    s = finetune.score([["B-X", "I-X", "O"], ["B-Y"]], [["B-X", "I-X", "O"], ["B-X"]])
    assert s["strictP"] == 50 and s["strictR"] == 50 and s["perType"] == {"X": 66.67, "Y": 0.0}
    # A boundary error is an error for the strict metric.
    assert finetune.score([["B-X", "I-X"]], [["B-X", "O"]])["strictF1"] == 0


def test_compact_keeps_the_order_of_original_tokens_in_long_rows():
    # Rows longer than 127 tokens once overflowed an int8 sort key and scrambled the order.
    T = 300
    labels = torch.full((2, T), -1)
    labels[0, 1:250:2] = torch.arange(1, 250, 2) % 3
    labels[1, 5:9] = 2
    logits = torch.arange(T).float().view(1, T, 1).expand(2, T, 3).clone()
    emissions, tags, mask = finetune.Tagger.compact(logits, labels)
    assert mask.sum(1).tolist() == [125, 4]
    assert emissions[0, :125, 0].tolist() == list(range(1, 250, 2))
    assert emissions[1, :4, 0].tolist() == [5, 6, 7, 8]
    assert tags[0, :125].tolist() == [i % 3 for i in range(1, 250, 2)]


def run(args, **kw):
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, **kw)
    return done


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finetune")
    features = tmp / "features"
    done = run(["node", "--import", "tsx", "src/cli/main.ts", "features", "--corpus", "medical", "--splits", "train,dev",
                "--limit", "24", "--out", str(features)])
    assert done.returncode == 0, done.stderr
    # A tiny random backbone over the full vocabulary (an export folder: HF config.json + weights).
    torch.manual_seed(0)
    config = BertConfig(21128, 16, 1, 2, 32, max_positions=512)
    backbone = tmp / "backbone"
    backbone.mkdir()
    save_weights(BertModel(config, mlm_head=True, dropout=0.0).state_dict(), backbone / "weights.safetensors")
    (backbone / "config.json").write_text(json.dumps(hf_config(config)))
    out = tmp / "model"
    assert finetune.main(["--features", str(features), "--backbone", str(backbone), "--out", str(out), "--head", "crf",
                          "--optimizer", "adamw", "--lr", "1e-3", "--epochs", "2", "--batch-size", "8"]) == 0
    return out


def test_training_writes_weights_config_summary_and_parity(trained):
    summary = json.loads((trained / "training.json").read_text())
    assert summary["bestEpoch"] in (1, 2) and len(summary["history"]) == 2
    assert summary["labels"][0] == "O" and len(summary["labels"]) == 11
    parity = json.loads((trained / "parity.json").read_text())
    assert len(parity["examples"]) == 4 and len(parity["examples"][0]["logits"][0]) == 11
    from safetensors.torch import load_file
    names = set(load_file(str(trained / "weights.safetensors")))
    assert {"crf.transitions", "crf.start_transitions", "crf.end_transitions", "classifier.weight"} <= names
    assert not any(n.startswith("cls.") for n in names)


def test_import_checks_parity_and_refuses_a_mismatch(trained, tmp_path):
    labels = ",".join(json.loads((trained / "training.json").read_text())["labels"])
    base = ["node", "--import", "tsx", "src/cli/main.ts", "import", str(trained / "weights.safetensors"),
            "--knowledge", "--no-progress", "--name", "tiny"]
    # Labels come from training.json when --labels is not given.
    ok = run(base + ["--out", str(tmp_path / "a"), "--parity", str(trained / "parity.json"), "--training", str(trained / "training.json")])
    assert ok.returncode == 0, ok.stderr + ok.stdout
    assert "CRF output layer" in ok.stdout and "parity: 4 examples" in ok.stdout
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["training"]["head"] == "crf" and config["training"]["parity"]["relativeError"] <= 1e-4
    assert config["labels"] == labels.split(",")
    # The knowledge settings come from the features the model was trained on, not from flags.
    assert config["knowledge"]["enabled"] is True and config["knowledge"]["maxLength"] == 256
    assert config["knowledge"]["kgVersion"] == json.loads((trained / "training.json").read_text())["knowledge"]["kgVersion"]
    # Shift one logit: the check must notice.
    parity = json.loads((trained / "parity.json").read_text())
    parity["examples"][0]["logits"][1][2] += 0.05
    bad = tmp_path / "bad-parity.json"
    bad.write_text(json.dumps(parity))
    refused = run(base + ["--labels", labels, "--out", str(tmp_path / "b"), "--parity", str(bad)])
    assert refused.returncode == 1 and "parity check failed" in refused.stderr
    assert not (tmp_path / "b").exists()


def test_a_deadline_stops_cleanly_and_keeps_the_best_epoch(trained, tmp_path):
    # A run bounded on a shared machine must still leave a usable model and say that it was cut short.
    out = tmp_path / "cut"
    backbone = trained.parent / "backbone"
    assert finetune.main(["--features", str(trained.parent / "features"), "--backbone", str(backbone), "--out", str(out),
                          "--head", "crf", "--optimizer", "adamw", "--epochs", "50", "--batch-size", "8",
                          "--deadline-minutes", "0.0001"]) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["stopped"].startswith("deadline") and len(summary["history"]) == 1
    done, planned = map(int, summary["history"][0]["batches"].split("/"))
    assert done < planned
    assert (out / "weights.safetensors").exists() and (out / "parity.json").exists()
    # A run that ends by itself says so with null.
    assert json.loads((trained / "training.json").read_text())["stopped"] is None
