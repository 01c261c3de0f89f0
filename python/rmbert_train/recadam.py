"""RecAdam (recall and learn) exactly as ../shared/ARCHITECTURE.md states it and src/train/recadam.ts does it.

lambda(t) = weight / (1 + exp(-k (t - t0))) (sigmoid), min(1, t / t0) * weight (linear) or weight (constant).
Adam moments come from the task gradient only. Each pretrained parameter moves by
-lr_t * lambda(t) * m_hat / (sqrt(v_hat) + eps), then is pulled toward its pretrained value theta* by
-lr_t * (weight - lambda(t)) * gamma * (theta' - theta*). New parameters (the classification head, the CRF)
take plain Adam steps. Decoupled weight decay, when set, applies last, to decaying parameters only.
The step count t starts at 1. Note the pull factor lr * (1 - lambda) * gamma must stay below 1 (gamma 5000
is RecAdam's default for learning rates around 1e-5; at 1e-4 it would overshoot).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import torch


@dataclass(frozen=True)
class Anneal:
    kind: str = "sigmoid"  # sigmoid | linear | constant
    k: float = 0.01
    t0: float = 1000
    weight: float = 1.0

    def at(self, step: int) -> float:
        if self.kind == "sigmoid":
            return self.weight / (1 + math.exp(-self.k * (step - self.t0)))
        if self.kind == "linear":
            return min(1.0, step / self.t0) * self.weight if self.t0 > 0 else self.weight
        if self.kind == "constant":
            return self.weight
        raise ValueError(f"unknown annealing {self.kind!r} (sigmoid, linear or constant)")


def default_is_pretrained(name: str) -> bool:
    return not (name.startswith("classifier.") or name.startswith("crf."))


def default_no_decay(name: str) -> bool:
    return name.endswith(".bias") or "LayerNorm" in name


class RecAdam:
    def __init__(
        self,
        named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
        learning_rate: float | Callable[[int], float],
        anneal: Anneal,
        gamma: float = 5000.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        epsilon: float = 1e-6,
        weight_decay: float = 0.0,
        is_pretrained: Callable[[str], bool] = default_is_pretrained,
        no_decay: Callable[[str], bool] = default_no_decay,
    ):
        self.learning_rate = learning_rate
        self.anneal = anneal
        self.gamma = gamma
        self.beta1, self.beta2, self.epsilon, self.weight_decay = beta1, beta2, epsilon, weight_decay
        self.step_count = 0
        self.slots = []
        for name, p in named_parameters:
            pretrained = is_pretrained(name)
            self.slots.append({
                "name": name,
                "param": p,
                "m": torch.zeros_like(p, memory_format=torch.preserve_format),
                "v": torch.zeros_like(p, memory_format=torch.preserve_format),
                "pretrained": pretrained,
                "anchor": p.detach().clone() if pretrained and gamma != 0 else None,
                "decay": not no_decay(name),
            })

    @property
    def pretrained_names(self) -> list[str]:
        return [s["name"] for s in self.slots if s["pretrained"]]

    def lr_at(self, step: int) -> float:
        return self.learning_rate(step) if callable(self.learning_rate) else self.learning_rate

    def zero_grad(self) -> None:
        for s in self.slots:
            s["param"].grad = None

    @torch.no_grad()
    def step(self) -> None:
        t = self.step_count = self.step_count + 1
        lr = self.lr_at(t)
        lam = self.anneal.at(t)
        bc1 = 1 - self.beta1 ** t
        bc2 = 1 - self.beta2 ** t
        for s in self.slots:
            p, g = s["param"], s["param"].grad
            if g is None:
                continue
            m, v = s["m"], s["v"]
            m.mul_(self.beta1).add_(g, alpha=1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            direction = (m / bc1) / ((v / bc2).sqrt() + self.epsilon)
            if s["pretrained"]:
                p.sub_(direction * (lr * lam))
                pull = lr * (self.anneal.weight - lam) * self.gamma
                if s["anchor"] is not None and pull != 0:
                    p.sub_((p - s["anchor"]) * pull)
            else:
                p.sub_(direction * lr)
            if self.weight_decay > 0 and s["decay"]:
                p.sub_(p * (lr * self.weight_decay))

    @torch.no_grad()
    def distance_l1(self) -> float:
        """||theta - theta*||_1 over the anchored parameters (paper fig. 7)."""
        return float(sum((s["param"] - s["anchor"]).abs().sum() for s in self.slots if s["anchor"] is not None))
