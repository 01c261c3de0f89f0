"""The BERT of src/model/bert.ts in PyTorch, parameter for parameter.

Word + soft-position + segment embeddings, LayerNorm, L layers of multi-head self-attention with an
additive visibility mask [B, T, T] (0 visible, MASK_NEGATIVE not; the same mask in every layer,
broadcast over heads), exact (erf) GELU feed-forward, a token-classification head and a masked-LM head
whose decoder is tied to the word embeddings. Parameters carry the Hugging Face names that model
artifacts use, in HF layout (Linear weights [out, in]), so `state_dict()` is an artifact's weight map.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

# The additive value for "not visible" (src/model/types.ts MASK_NEGATIVE).
MASK_NEGATIVE = -10000.0
INIT_STD = 0.02


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @staticmethod
    def from_artifact(model: dict) -> "BertConfig":
        """From an artifact config.json's "model" object (camelCase names)."""
        return BertConfig(
            vocab_size=model["vocabSize"],
            hidden_size=model["hiddenSize"],
            num_layers=model["numLayers"],
            num_heads=model["numHeads"],
            intermediate_size=model["intermediateSize"],
            max_positions=model["maxPositions"],
            type_vocab_size=model["typeVocabSize"],
            layer_norm_eps=model["layerNormEps"],
        )

    def to_artifact(self) -> dict:
        return {
            "vocabSize": self.vocab_size,
            "hiddenSize": self.hidden_size,
            "numLayers": self.num_layers,
            "numHeads": self.num_heads,
            "intermediateSize": self.intermediate_size,
            "maxPositions": self.max_positions,
            "typeVocabSize": self.type_vocab_size,
            "layerNormEps": self.layer_norm_eps,
        }


class _Linear(nn.Module):
    """nn.Linear's parameter names (weight [out, in], bias) with BERT's initialisation."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.trunc_normal_(self.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_positions, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        for e in (self.word_embeddings, self.position_embeddings, self.token_type_embeddings):
            nn.init.trunc_normal_(e.weight, std=INIT_STD, a=-2 * INIT_STD, b=2 * INIT_STD)


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.query = _Linear(c.hidden_size, c.hidden_size)
        self.key = _Linear(c.hidden_size, c.hidden_size)
        self.value = _Linear(c.hidden_size, c.hidden_size)


class _DenseNorm(nn.Module):
    def __init__(self, n_in: int, n_out: int, eps: float):
        super().__init__()
        self.dense = _Linear(n_in, n_out)
        self.LayerNorm = nn.LayerNorm(n_out, eps=eps)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps)


class _Dense(nn.Module):
    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.dense = _Linear(n_in, n_out)


class _Layer(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Dense(c.hidden_size, c.intermediate_size)
        self.output = _DenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps)
        self.num_heads = c.num_heads

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, dropout: float) -> torch.Tensor:
        B, T, H = x.shape
        nh = self.num_heads
        d = H // nh
        sa = self.attention.self
        q = sa.query(x).view(B, T, nh, d).transpose(1, 2)
        k = sa.key(x).view(B, T, nh, d).transpose(1, 2)
        v = sa.value(x).view(B, T, nh, d).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
        if mask is not None:
            scores = scores + mask.unsqueeze(1)
        probs = F.dropout(torch.softmax(scores, dim=-1), dropout, self.training)
        context = torch.matmul(probs, v).transpose(1, 2).reshape(B, T, H)
        ao = self.attention.output
        h1 = ao.LayerNorm(F.dropout(ao.dense(context), dropout, self.training) + x)
        inter = F.gelu(self.intermediate.dense(h1))
        oo = self.output
        return oo.LayerNorm(F.dropout(oo.dense(inter), dropout, self.training) + h1)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([_Layer(c) for _ in range(c.num_layers)])


class _Bert(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)


class _MlmTransform(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = _Linear(c.hidden_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)


class _MlmPredictions(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.transform = _MlmTransform(c)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))


class _MlmHead(nn.Module):
    def __init__(self, c: BertConfig):
        super().__init__()
        self.predictions = _MlmPredictions(c)


class BertModel(nn.Module):
    """Encoder plus optional heads; `state_dict()` keys are the artifact's HF names."""

    def __init__(self, config: BertConfig, num_labels: int = 0, mlm_head: bool = False, dropout: float = 0.1):
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.dropout = dropout
        self.bert = _Bert(config)
        if num_labels > 0:
            self.classifier = _Linear(config.hidden_size, num_labels)
        if mlm_head:
            self.cls = _MlmHead(config)

    @property
    def has_mlm_head(self) -> bool:
        return hasattr(self, "cls")

    def encode(
        self,
        token_ids: torch.Tensor,
        soft_positions: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Final hidden states [B, T, H]. `mask` is the additive visibility mask [B, T, T] (None: all visible)."""
        B, T = token_ids.shape
        emb = self.bert.embeddings
        if soft_positions is None:
            soft_positions = torch.arange(T, device=token_ids.device).unsqueeze(0).expand(B, T)
        x = emb.word_embeddings(token_ids) + emb.position_embeddings(soft_positions)
        if segment_ids is None:
            x = x + emb.token_type_embeddings.weight[0]
        else:
            x = x + emb.token_type_embeddings(segment_ids)
        x = F.dropout(emb.LayerNorm(x), self.dropout, self.training)
        for layer in self.bert.encoder.layer:
            x = layer(x, mask, self.dropout)
        return x

    def token_logits(self, token_ids, soft_positions=None, segment_ids=None, mask=None) -> torch.Tensor:
        """Token-classification logits [B, T, numLabels]."""
        hidden = self.encode(token_ids, soft_positions, segment_ids, mask)
        return self.classifier(F.dropout(hidden, self.dropout, self.training))

    def mlm_logits(self, hidden_rows: torch.Tensor, vocab_subset: torch.Tensor | None = None) -> torch.Tensor:
        """MLM logits [M, V] (or [M, |subset|]) for hidden states [M, H] at the masked positions only."""
        p = self.cls.predictions
        t = p.transform.LayerNorm(F.gelu(p.transform.dense(hidden_rows)))
        words = self.bert.embeddings.word_embeddings.weight
        if vocab_subset is None:
            return F.linear(t, words, p.bias)
        return F.linear(t, words.index_select(0, vocab_subset), p.bias.index_select(0, vocab_subset))


def decays(name: str) -> bool:
    """AdamW weight decay applies to weights, not to biases or LayerNorm parameters."""
    return not name.endswith(".bias") and "LayerNorm" not in name
