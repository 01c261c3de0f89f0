#!/usr/bin/env python3
"""Numeric parity fixtures for the BERT encoder with knowledge injection.

An independent reference forward pass in float64 numpy (no deep-learning framework) of a tiny random
BERT token classifier, fed K-BERT inputs: soft position ids and a visibility matrix built from a
sentence tree with injected branches. The weights use Hugging Face BertForTokenClassification names
(plus an unused pooler, as real checkpoints have) and are stored in float32; the reference computes in
float64 from those float32 values.

Writes test/fixtures/parity/:
  weights.safetensors  float32 weights, HF names
  config.json          the HF BertConfig of the model (hidden 32 cannot imply the head count)
  inputs.json          per sentence: tokenIds, softPositions, segmentIds, branch, anchor, visible (0/1 matrix)
  expected.json        per sentence: hidden (final encoder states [T, H]) and logits ([T, numLabels])

Run: python3 -m venv .venv && .venv/bin/pip install numpy safetensors && .venv/bin/python scripts/parity/make_fixtures.py
The output is deterministic (fixed seed).
"""
import json
import math
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'test', 'fixtures', 'parity')

CONFIG = dict(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
              max_position_embeddings=40, type_vocab_size=2, layer_norm_eps=1e-12)
NUM_LABELS = 3
MASK_NEGATIVE = -10000.0  # src/domain/index.ts MASK_NEGATIVE
CLS, SEP = 1, 2


def make_weights(rng):
    """Random weights, larger than BERT's 0.02 init so that attention is far from uniform and the mask matters."""
    H, I, V = CONFIG['hidden_size'], CONFIG['intermediate_size'], CONFIG['vocab_size']
    w = {}

    def normal(shape, std):
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def layer_norm(prefix):
        w[prefix + '.weight'] = (1.0 + rng.standard_normal(H) * 0.1).astype(np.float32)
        w[prefix + '.bias'] = normal((H,), 0.1)

    def linear(prefix, n_out, n_in, std):
        w[prefix + '.weight'] = normal((n_out, n_in), std)  # PyTorch layout [out, in]
        w[prefix + '.bias'] = normal((n_out,), 0.1)

    w['bert.embeddings.word_embeddings.weight'] = normal((V, H), 0.5)
    w['bert.embeddings.position_embeddings.weight'] = normal((CONFIG['max_position_embeddings'], H), 0.5)
    w['bert.embeddings.token_type_embeddings.weight'] = normal((CONFIG['type_vocab_size'], H), 0.5)
    layer_norm('bert.embeddings.LayerNorm')
    for i in range(CONFIG['num_hidden_layers']):
        p = f'bert.encoder.layer.{i}'
        for m in ('query', 'key', 'value'):
            linear(f'{p}.attention.self.{m}', H, H, 0.4)
        linear(f'{p}.attention.output.dense', H, H, 0.2)
        layer_norm(f'{p}.attention.output.LayerNorm')
        linear(f'{p}.intermediate.dense', I, H, 0.3)
        linear(f'{p}.output.dense', H, I, 0.2)
        layer_norm(f'{p}.output.LayerNorm')
    linear('bert.pooler.dense', H, H, 0.2)  # in real checkpoints; not used for token classification
    linear('classifier', NUM_LABELS, H, 0.5)
    return w


def is_visible(branch, anchor, i, j):
    """The rule of isVisible in src/domain/index.ts, written out independently."""
    bi, bj = branch[i], branch[j]
    if bi < 0 and bj < 0:
        return True  # original tokens see each other
    if bi >= 0 and bi == bj:
        return True  # tokens of one branch see each other
    # a matched name and its own branches see each other (exactly one of the two is injected)
    return anchor[i] >= 0 and anchor[i] == anchor[j] and ((bi < 0) != (bj < 0))


def sentences(rng):
    """Three sentences by hand: two injected branches on two names; two parallel branches on one name; plain with two segments."""
    V = CONFIG['vocab_size']

    def ids(n):
        return [int(x) for x in rng.integers(3, V, size=n)]

    out = []
    # A: [CLS] n n n n (name 1) | b b b b (branch on name 1) | o | n n n (name 2) | b b (branch on name 2) | o [SEP]
    T = 17
    branch = [-1] * T
    anchor = [-1] * T
    for h in range(5, 9):
        branch[h] = 5
    for h in range(13, 15):
        branch[h] = 13
    for h in range(1, 9):
        anchor[h] = 1
    for h in range(10, 15):
        anchor[h] = 10
    soft = [0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 9, 10]
    out.append(dict(name='two-branches', tokenIds=[CLS] + ids(T - 2) + [SEP], softPositions=soft,
                    segmentIds=[0] * T, branch=branch, anchor=anchor))
    # B: [CLS] n n (name) | b b (branch 1) | b b (branch 2, parallel: same positions) | o [SEP]
    T = 9
    branch = [-1, -1, -1, 3, 3, 5, 5, -1, -1]
    anchor = [-1, 1, 1, 1, 1, 1, 1, -1, -1]
    soft = [0, 1, 2, 3, 4, 3, 4, 3, 4]
    out.append(dict(name='parallel-branches', tokenIds=[CLS] + ids(T - 2) + [SEP], softPositions=soft,
                    segmentIds=[0] * T, branch=branch, anchor=anchor))
    # C: plain sentence pair, no injection, segments 0 and 1
    T = 6
    out.append(dict(name='plain-two-segments', tokenIds=[CLS] + ids(2) + [SEP] + ids(1) + [SEP],
                    softPositions=list(range(T)), segmentIds=[0, 0, 0, 0, 1, 1], branch=[-1] * T, anchor=[-1] * T))
    for s in out:
        T = len(s['tokenIds'])
        assert all(len(s[k]) == T for k in ('softPositions', 'segmentIds', 'branch', 'anchor'))
        s['visible'] = [[1 if is_visible(s['branch'], s['anchor'], i, j) else 0 for j in range(T)] for i in range(T)]
        # the matrix is symmetric (paper fig. 3)
        assert all(s['visible'][i][j] == s['visible'][j][i] for i in range(T) for j in range(T))
    return out


_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def layer_norm(x, g, b, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * g + b


def forward(w64, s):
    H = CONFIG['hidden_size']
    nh = CONFIG['num_attention_heads']
    d = H // nh
    eps = CONFIG['layer_norm_eps']
    ids = np.array(s['tokenIds'])
    pos = np.array(s['softPositions'])
    seg = np.array(s['segmentIds'])
    mask = np.where(np.array(s['visible']) == 1, 0.0, MASK_NEGATIVE)  # additive [T, T]

    def linear(x, prefix):
        return x @ w64[prefix + '.weight'].T + w64[prefix + '.bias']

    x = (w64['bert.embeddings.word_embeddings.weight'][ids]
         + w64['bert.embeddings.position_embeddings.weight'][pos]
         + w64['bert.embeddings.token_type_embeddings.weight'][seg])
    x = layer_norm(x, w64['bert.embeddings.LayerNorm.weight'], w64['bert.embeddings.LayerNorm.bias'], eps)
    T = len(ids)
    for i in range(CONFIG['num_hidden_layers']):
        p = f'bert.encoder.layer.{i}'
        q = linear(x, f'{p}.attention.self.query').reshape(T, nh, d).transpose(1, 0, 2)
        k = linear(x, f'{p}.attention.self.key').reshape(T, nh, d).transpose(1, 0, 2)
        v = linear(x, f'{p}.attention.self.value').reshape(T, nh, d).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(d) + mask[None, :, :]
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs = probs / probs.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(1, 0, 2).reshape(T, H)
        attn = linear(ctx, f'{p}.attention.output.dense')
        x = layer_norm(attn + x, w64[f'{p}.attention.output.LayerNorm.weight'], w64[f'{p}.attention.output.LayerNorm.bias'], eps)
        inter = gelu(linear(x, f'{p}.intermediate.dense'))
        out = linear(inter, f'{p}.output.dense')
        x = layer_norm(out + x, w64[f'{p}.output.LayerNorm.weight'], w64[f'{p}.output.LayerNorm.bias'], eps)
    logits = linear(x, 'classifier')
    return x, logits


def main():
    rng = np.random.default_rng(20240601)
    weights = make_weights(rng)
    w64 = {k: v.astype(np.float64) for k, v in weights.items()}
    sents = sentences(rng)
    expected = []
    for s in sents:
        hidden, logits = forward(w64, s)
        expected.append(dict(name=s['name'], hidden=hidden.tolist(), logits=logits.tolist()))
    os.makedirs(OUT, exist_ok=True)
    save_file(weights, os.path.join(OUT, 'weights.safetensors'), metadata={'format': 'pt'})
    hf_config = dict(architectures=['BertForTokenClassification'], model_type='bert', hidden_act='gelu',
                     position_embedding_type='absolute', num_labels=NUM_LABELS, **CONFIG)
    with open(os.path.join(OUT, 'config.json'), 'w') as f:
        json.dump(hf_config, f, indent=2)
        f.write('\n')
    with open(os.path.join(OUT, 'inputs.json'), 'w') as f:
        json.dump(dict(maskNegative=MASK_NEGATIVE, sentences=sents), f)
        f.write('\n')
    with open(os.path.join(OUT, 'expected.json'), 'w') as f:
        json.dump(dict(precision='float64 reference from float32 weights', sentences=expected), f)
        f.write('\n')
    for s, e in zip(sents, expected):
        h = np.array(e['hidden'])
        print(f"{s['name']}: T={len(s['tokenIds'])} |hidden|max={np.abs(h).max():.3f} logits[0]={np.round(e['logits'][0], 4).tolist()}")


if __name__ == '__main__':
    main()
