"""Attention-MIL heads with CLAM's own module layout (mahmoodlab/CLAM ``models/model_clam.py``), so a lab's CLAM
checkpoint loads with ``strict=True``: ABMIL (gated and ungated attention, Ilse et al. 2018), CLAM-SB and CLAM-MB.

Key names, as CLAM builds them (``attention_net`` is ``Sequential(Linear, ReLU, Dropout, Attn_Net[_Gated])``):
``attention_net.0.{weight,bias}``; gated: ``attention_net.3.attention_a.0``, ``attention_net.3.attention_b.0``,
``attention_net.3.attention_c``; ungated: ``attention_net.3.module.0`` and ``attention_net.3.module.2`` (``.3`` when the
attention net has dropout); ``classifiers`` (SB: one ``Linear(512, C)``; MB: ``classifiers.<c>`` of ``Linear(512, 1)``);
``instance_classifiers.<c>`` of ``Linear(512, 2)``.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

SIZES = {"small": (512, 256), "big": (512, 384)}  # CLAM's size_dict after embed_dim: (hidden, attention dim)
CHUNK = 4096  # patches per step when scoring a bag: bounds the (N, attention dim) temporaries


class AttnNet(nn.Module):
    """CLAM ``Attn_Net``: a = w^T tanh(V h) (K scores per patch)."""

    def __init__(self, L: int = 1024, D: int = 256, dropout: bool = False, n_classes: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(L, D), nn.Tanh()]
        if dropout:
            layers.append(nn.Dropout(0.25))
        layers.append(nn.Linear(D, n_classes))
        self.module = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.module(h)


class AttnNetGated(nn.Module):
    """CLAM ``Attn_Net_Gated``: a = w^T (tanh(V h) * sigmoid(U h)) (K scores per patch)."""

    def __init__(self, L: int = 1024, D: int = 256, dropout: bool = False, n_classes: int = 1) -> None:
        super().__init__()
        a: list[nn.Module] = [nn.Linear(L, D), nn.Tanh()]
        b: list[nn.Module] = [nn.Linear(L, D), nn.Sigmoid()]
        if dropout:
            a.append(nn.Dropout(0.25))
            b.append(nn.Dropout(0.25))
        self.attention_a = nn.Sequential(*a)
        self.attention_b = nn.Sequential(*b)
        self.attention_c = nn.Linear(D, n_classes)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.attention_c(self.attention_a(h).mul(self.attention_b(h)))


def clam_checkpoint_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What CLAM's ``eval_utils.initiate_model`` does before its strict load: drop the ``instance_loss_fn`` buffers
    (SmoothTop1SVM's) and the ``module.`` segment ``nn.DataParallel`` adds. Only a whole ``module.`` path segment after
    the start or after ``attention_net.`` is removed: ``Attn_Net``'s own ``.module.`` is part of its key names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("instance_loss_fn."):
            continue
        key = key.removeprefix("module.")
        if key.startswith("attention_net.module."):
            key = "attention_net." + key.removeprefix("attention_net.module.")
        out[key] = value
    return out


class AttentionMIL(nn.Module, abc.ABC):
    """The shared trunk: ``attention_net`` = Linear(embed_dim, hidden), ReLU, Dropout, attention net with K outputs."""

    def __init__(self, gate: bool, size_arg: str, dropout: float, embed_dim: int, n_attention: int) -> None:
        super().__init__()
        if size_arg not in SIZES:
            raise ValueError(f"size_arg must be one of {', '.join(SIZES)}")
        hidden, attention_dim = SIZES[size_arg]
        net = (AttnNetGated if gate else AttnNet)(L=hidden, D=attention_dim, dropout=bool(dropout), n_classes=n_attention)
        self.attention_net = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Dropout(dropout), net)
        self.embed_dim, self.hidden = embed_dim, hidden

    checkpoint_state = staticmethod(clam_checkpoint_state)

    def explain(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``bag`` (N, embed_dim) -> (logits (C,), raw attention A (K, N) before the softmax over patches, per-patch
        instance scores (N, C) or None), in one pass over chunks of patches.

        The slide embedding M = softmax(A) h is accumulated chunk by chunk with a running maximum (the streaming form
        of the softmax), so neither h (N, hidden) nor the attention net's temporaries are ever held for the whole bag:
        the bag itself stays the largest thing in memory. The result equals CLAM's ``torch.mm(F.softmax(A), h)``."""
        stream = AttentionStream(self, bag.shape[0], bag)
        stream.add(bag)
        return stream.result()

    def forward(self, bag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, embed_dim) -> (logits (C,), raw attention (K, N)), as CLAM's forward without instance_eval."""
        logits, raw, _ = self.explain(bag)
        return logits, raw

    @abc.abstractmethod
    def bag_logits(self, slide_embedding: torch.Tensor) -> torch.Tensor:
        """Slide logits (C,) from the attention-pooled slide embeddings M (K, hidden)."""

    def instances_from_embedding(self, h: torch.Tensor) -> torch.Tensor | None:
        """Per-patch class scores (N, C) where the head has instance classifiers; None where it has not."""
        return None


class AttentionStream:
    """``AttentionMIL.explain`` one chunk of patches at a time, for a bag that arrives in pieces (a feature file read in
    row blocks, each sent to the device while the next is read). ``add`` chunks in order, then ``result``."""

    def __init__(self, head: AttentionMIL, n: int, like: torch.Tensor) -> None:
        self.head, self.n, self.filled = head, n, 0
        self.fc, self.attention = head.attention_net[:3], head.attention_net[3]
        k = attention_out(self.attention)
        self.raw = like.new_empty((k, n))
        self.running_max = like.new_full((k, 1), float("-inf"))
        self.norm = like.new_zeros((k, 1))
        self.weighted = like.new_zeros((k, head.hidden))
        self.instances: list[torch.Tensor] = []

    def add(self, chunk: torch.Tensor) -> None:
        for start in range(0, chunk.shape[0], CHUNK):  # bounds the (chunk, hidden) temporaries whatever the caller sends
            self._add(chunk[start:start + CHUNK])

    def _add(self, chunk: torch.Tensor) -> None:
        h = self.fc(chunk)
        a = self.attention(h).T  # (K, chunk)
        self.raw[:, self.filled:self.filled + chunk.shape[0]] = a
        self.filled += chunk.shape[0]
        new_max = torch.maximum(self.running_max, a.max(dim=1, keepdim=True).values)
        rescale, e = torch.exp(self.running_max - new_max), torch.exp(a - new_max)
        self.norm = self.norm * rescale + e.sum(dim=1, keepdim=True)
        self.weighted = self.weighted * rescale + e @ h
        self.running_max = new_max
        scores = self.head.instances_from_embedding(h)
        if scores is not None:
            self.instances.append(scores)

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if self.filled != self.n:
            raise ValueError(f"the bag has {self.n} patches but {self.filled} were added")
        logits = self.head.bag_logits(self.weighted / self.norm)
        return logits, self.raw, torch.cat(self.instances) if self.instances else None


def attention_out(net: nn.Module) -> int:
    """How many attention branches (K) an attention net scores."""
    last = net.attention_c if isinstance(net, AttnNetGated) else list(net.modules())[-1]
    if not isinstance(last, nn.Linear):
        raise TypeError("an attention net ends with a Linear layer")
    return int(last.out_features)


class ABMIL(AttentionMIL):
    """Attention MIL (Ilse et al. 2018): slide embedding M = softmax_i(a_i) h_i, logits = W M; CLAM's trunk and a
    ``classifiers`` Linear, without instance classifiers."""

    def __init__(self, gate: bool = True, size_arg: str = "small", dropout: float = 0.0, n_classes: int = 2,
                 embed_dim: int = 1024) -> None:
        super().__init__(gate, size_arg, dropout, embed_dim, 1)
        self.classifiers = nn.Linear(self.hidden, n_classes)
        self.n_classes = n_classes

    def bag_logits(self, slide_embedding: torch.Tensor) -> torch.Tensor:
        return self.classifiers(slide_embedding)[0]


class CLAMSB(AttentionMIL):
    """CLAM single-branch: one attention branch, bag logits from ``classifiers``, and one two-way instance classifier
    per class whose positive probability is the patch's instance score for that class."""

    def __init__(self, gate: bool = True, size_arg: str = "small", dropout: float = 0.0, k_sample: int = 8,
                 n_classes: int = 2, subtyping: bool = False, embed_dim: int = 1024) -> None:
        super().__init__(gate, size_arg, dropout, embed_dim, 1)
        self.classifiers: nn.Module = nn.Linear(self.hidden, n_classes)
        self.instance_classifiers = nn.ModuleList([nn.Linear(self.hidden, 2) for _ in range(n_classes)])
        self.k_sample, self.n_classes, self.subtyping = k_sample, n_classes, subtyping

    def bag_logits(self, slide_embedding: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.classifiers, nn.Linear)
        return self.classifiers(slide_embedding)[0]

    def instances_from_embedding(self, h: torch.Tensor) -> torch.Tensor:
        """(N, C): softmax(instance_classifiers[c](h_i))[1], the probability CLAM's instance loss trains to be 1 for a
        top-attended patch of class c (``inst_eval``) and 0 for a bottom-attended one."""
        return torch.stack([torch.softmax(clf(h), dim=1)[:, 1] for clf in self.instance_classifiers], dim=1)

    def instance_scores(self, bag: torch.Tensor) -> torch.Tensor:
        scores = self.explain(bag)[2]
        assert scores is not None
        return scores


class CLAMMB(CLAMSB):
    """CLAM multi-branch: one attention branch per class; class c's logit = classifiers[c](M_c)."""

    def __init__(self, gate: bool = True, size_arg: str = "small", dropout: float = 0.0, k_sample: int = 8,
                 n_classes: int = 2, subtyping: bool = False, embed_dim: int = 1024) -> None:
        AttentionMIL.__init__(self, gate, size_arg, dropout, embed_dim, n_classes)
        self.classifiers = nn.ModuleList([nn.Linear(self.hidden, 1) for _ in range(n_classes)])
        self.instance_classifiers = nn.ModuleList([nn.Linear(self.hidden, 2) for _ in range(n_classes)])
        self.k_sample, self.n_classes, self.subtyping = k_sample, n_classes, subtyping

    def bag_logits(self, slide_embedding: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.classifiers, nn.ModuleList)  # one slide embedding per class branch
        return torch.cat([clf(slide_embedding[c]) for c, clf in enumerate(self.classifiers)])
