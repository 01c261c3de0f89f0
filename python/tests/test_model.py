"""The PyTorch BERT against the float64 numpy reference of scripts/parity (the TypeScript forward pass is
checked against the same fixture by test/unit/model/parity.test.ts), so the two training paths share one
definition of the model."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rmbert_train.model import MASK_NEGATIVE, BertConfig, BertModel
from rmbert_train.safetensors_io import load_weights

FIXTURES = Path(__file__).resolve().parents[2] / "test" / "fixtures" / "parity"


def fixture_model() -> BertModel:
    hf = json.loads((FIXTURES / "config.json").read_text())
    config = BertConfig(hf["vocab_size"], hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"],
                        hf["intermediate_size"], hf["max_position_embeddings"], hf["type_vocab_size"], hf["layer_norm_eps"])
    model = BertModel(config, num_labels=hf["num_labels"], dropout=0.0)
    weights = {k: v for k, v in load_weights(FIXTURES / "weights.safetensors").items() if "pooler" not in k}
    model.load_state_dict(weights)
    return model.eval()


def sentences():
    inputs = json.loads((FIXTURES / "inputs.json").read_text())
    expected = json.loads((FIXTURES / "expected.json").read_text())
    assert inputs["maskNegative"] == MASK_NEGATIVE
    return list(zip(inputs["sentences"], expected["sentences"]))


def tensors(s):
    ids = torch.tensor([s["tokenIds"]])
    pos = torch.tensor([s["softPositions"]])
    seg = torch.tensor([s["segmentIds"]])
    mask = (1 - torch.tensor([s["visible"]], dtype=torch.float32)) * MASK_NEGATIVE
    return ids, pos, seg, mask


def rel_error(a: torch.Tensor, b: np.ndarray) -> float:
    b = torch.tensor(b, dtype=torch.float64)
    return float((a.double() - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("index", range(3))
def test_logits_and_hidden_match_the_reference(index):
    model = fixture_model()
    cases = sentences()
    if index >= len(cases):
        pytest.skip("fixture has fewer sentences")
    s, e = cases[index]
    ids, pos, seg, mask = tensors(s)
    with torch.no_grad():
        hidden = model.encode(ids, pos, seg, mask)[0]
        logits = model.token_logits(ids, pos, seg, mask)[0]
    assert rel_error(hidden, e["hidden"]) < 1e-4
    assert rel_error(logits, e["logits"]) < 1e-4


def test_the_fixture_exercises_mask_and_soft_positions():
    model = fixture_model()
    s, e = sentences()[0]
    ids, pos, seg, mask = tensors(s)
    with torch.no_grad():
        no_mask = model.token_logits(ids, pos, seg, torch.zeros_like(mask))[0]
        hard_pos = model.token_logits(ids, torch.arange(ids.shape[1]).unsqueeze(0), seg, mask)[0]
    assert rel_error(no_mask, e["logits"]) > 1e-2
    assert rel_error(hard_pos, e["logits"]) > 1e-2


def test_padded_batch_equals_one_at_a_time():
    model = fixture_model()
    cases = sentences()
    T = max(len(s["tokenIds"]) for s, _ in cases)
    B = len(cases)
    ids = torch.zeros(B, T, dtype=torch.long)
    pos = torch.zeros(B, T, dtype=torch.long)
    seg = torch.zeros(B, T, dtype=torch.long)
    mask = torch.full((B, T, T), MASK_NEGATIVE)
    for b, (s, _) in enumerate(cases):
        L = len(s["tokenIds"])
        one = tensors(s)
        ids[b, :L], pos[b, :L], seg[b, :L] = one[0][0], one[1][0], one[2][0]
        mask[b, :L, :L] = one[3][0]
    with torch.no_grad():
        logits = model.token_logits(ids, pos, seg, mask)
    for b, (s, e) in enumerate(cases):
        L = len(s["tokenIds"])
        assert rel_error(logits[b, :L], e["logits"]) < 1e-4
