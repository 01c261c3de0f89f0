"""A linear-chain CRF over BIO tags, constrained to valid BIO (no I-X after anything but B-X / I-X, no I-X
first), in training and in decoding alike. Parameters (HF-style names under "crf."):
  crf.transitions        [L, L]  score of tag i followed by tag j
  crf.start_transitions  [L]     score of tag j first
  crf.end_transitions    [L]     score of tag i last
The serving path (src/model/decode.ts) decodes with the same scores and the same constraint.
"""
from __future__ import annotations

import torch
from torch import nn

FORBIDDEN = -10000.0


def bio_constraints(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(allowed transitions [L, L], allowed first tags [L]) as booleans."""
    L = len(labels)
    allowed = torch.ones(L, L, dtype=torch.bool)
    start = torch.ones(L, dtype=torch.bool)
    for j, to in enumerate(labels):
        if to.startswith("I-"):
            kind = to[2:]
            start[j] = False
            for i, frm in enumerate(labels):
                allowed[i, j] = frm in (f"B-{kind}", f"I-{kind}")
    return allowed, start


class CRF(nn.Module):
    def __init__(self, labels: list[str]):
        super().__init__()
        L = len(labels)
        self.transitions = nn.Parameter(torch.zeros(L, L))
        self.start_transitions = nn.Parameter(torch.zeros(L))
        self.end_transitions = nn.Parameter(torch.zeros(L))
        allowed, start = bio_constraints(labels)
        self.register_buffer("penalty", torch.where(allowed, 0.0, FORBIDDEN), persistent=False)
        self.register_buffer("start_penalty", torch.where(start, 0.0, FORBIDDEN), persistent=False)

    def scores(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.transitions + self.penalty, self.start_transitions + self.start_penalty, self.end_transitions

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Summed negative log-likelihood. emissions [B, S, L], tags [B, S] (any value where masked),
        mask [B, S] bool with every sequence's valid steps first (left-aligned), at least one per row."""
        trans, start, end = self.scores()
        B, S, L = emissions.shape
        tags = tags.clamp(min=0)
        maskf = mask.float()
        # Score of the gold path.
        gold = start[tags[:, 0]] + emissions[:, 0].gather(1, tags[:, :1]).squeeze(1)
        for s in range(1, S):
            step = trans[tags[:, s - 1], tags[:, s]] + emissions[:, s].gather(1, tags[:, s : s + 1]).squeeze(1)
            gold = gold + step * maskf[:, s]
        lengths = mask.sum(1)
        last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)
        gold = gold + end[last]
        # Partition function.
        alpha = start.unsqueeze(0) + emissions[:, 0]
        for s in range(1, S):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, s]
            alpha = torch.where(mask[:, s : s + 1], nxt, alpha)
        log_z = torch.logsumexp(alpha + end.unsqueeze(0), dim=1)
        return (log_z - gold).sum()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        trans, start, end = self.scores()
        return viterbi(emissions, mask, trans, start, end)


@torch.no_grad()
def viterbi(emissions: torch.Tensor, mask: torch.Tensor, trans: torch.Tensor, start: torch.Tensor, end: torch.Tensor) -> list[list[int]]:
    B, S, L = emissions.shape
    score = start.unsqueeze(0) + emissions[:, 0]
    history = []
    for s in range(1, S):
        total = score.unsqueeze(2) + trans.unsqueeze(0)
        best, idx = total.max(dim=1)
        nxt = best + emissions[:, s]
        score = torch.where(mask[:, s : s + 1], nxt, score)
        history.append(idx)
    score = score + end.unsqueeze(0)
    lengths = mask.sum(1).tolist()
    paths = []
    for b in range(B):
        n = int(lengths[b])
        tag = int(score[b].argmax())
        path = [tag]
        for s in range(n - 1, 0, -1):
            tag = int(history[s - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths
