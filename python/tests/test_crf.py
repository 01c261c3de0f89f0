"""The CRF against brute force over every tag path of tiny sequences."""
import itertools
import math

import torch

from rmbert_train.crf import CRF, bio_constraints

LABELS = ["O", "B-X", "I-X", "B-Y", "I-Y"]


def path_score(crf, emissions, path):
    trans, start, end = crf.scores()
    s = start[path[0]] + emissions[0, path[0]]
    for a, b in zip(path, path[1:]):
        s = s + trans[a, b]
    for i, t in enumerate(path[1:], 1):
        s = s + emissions[i, t]
    return s + end[path[-1]]


def random_crf(seed=0):
    torch.manual_seed(seed)
    crf = CRF(LABELS)
    with torch.no_grad():
        crf.transitions.normal_()
        crf.start_transitions.normal_()
        crf.end_transitions.normal_()
    return crf


def test_bio_constraints():
    allowed, start = bio_constraints(LABELS)
    assert not start[2] and not start[4] and start[1]
    assert allowed[1, 2] and allowed[2, 2] and not allowed[0, 2] and not allowed[3, 2] and allowed[2, 0]


def test_nll_equals_brute_force_with_padding():
    crf = random_crf()
    emissions = torch.randn(2, 4, len(LABELS))
    lengths = [4, 3]
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    tags = torch.tensor([[1, 2, 0, 3], [0, 3, 4, 0]])
    expected = 0.0
    for b, n in enumerate(lengths):
        paths = list(itertools.product(range(len(LABELS)), repeat=n))
        log_z = torch.logsumexp(torch.stack([path_score(crf, emissions[b], p) for p in paths]), 0)
        expected += float(log_z - path_score(crf, emissions[b], tags[b, :n].tolist()))
    assert math.isclose(float(crf.nll(emissions, tags, mask)), expected, rel_tol=1e-5)


def test_viterbi_is_the_best_valid_path():
    crf = random_crf(1)
    emissions = torch.randn(3, 5, len(LABELS))
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    paths = crf.decode(emissions, mask)
    for b, n in enumerate([5, 3, 1]):
        best = max(itertools.product(range(len(LABELS)), repeat=n), key=lambda p: float(path_score(crf, emissions[b], list(p))))
        assert paths[b] == list(best)
        assert LABELS[paths[b][0]][:2] != "I-"
