"""Recurrent nets over a patient's visits with an output at every visit."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class VisitSequenceNet(nn.Module):
    """RNN / GRU / LSTM, uni- or bidirectional.

    Inputs per visit: z-scored numeric features, categorical codes (each embedded),
    and optionally the elapsed time since the previous visit. Output: one logit per visit.
    """

    def __init__(
        self,
        n_numeric: int,
        category_sizes: tuple[int, ...] = (),
        embedding_dim: int = 3,
        cell: str = "gru",
        hidden: int = 32,
        layers: int = 1,
        bidirectional: bool = False,
        elapsed_time: bool = True,
        dropout: float = 0.1,
        clip_z: float | None = None,
    ) -> None:
        """``clip_z``: z-scored numeric inputs are clipped to [-clip_z, clip_z], so that a heavy-tailed measurement (a PSA
        of 200 ng/mL in a cohort whose mean is 10) does not saturate the recurrent cell; None reads them as they are."""
        super().__init__()
        self.clip_z = clip_z
        if cell not in CELLS:
            raise ValueError(f"unknown recurrent cell {cell!r}; choose one of {sorted(CELLS)}")
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim) for n in category_sizes)
        self.elapsed_time = elapsed_time
        n_in = n_numeric + embedding_dim * len(category_sizes) + int(elapsed_time)
        self.rnn = CELLS[cell](
            n_in, hidden, num_layers=layers, batch_first=True, bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), 1)

    def visit_inputs(self, numeric: torch.Tensor, categories: torch.Tensor | None, elapsed: torch.Tensor | None) -> torch.Tensor:
        parts = [numeric if self.clip_z is None else numeric.clamp(-self.clip_z, self.clip_z)]
        if self.embeddings:
            if categories is None:
                raise ValueError("this net embeds categorical features: pass their codes")
            parts += [emb(categories[..., i]) for i, emb in enumerate(self.embeddings)]
        if self.elapsed_time:
            if elapsed is None:
                raise ValueError("this net reads the time elapsed between visits: pass it")
            parts.append(elapsed.unsqueeze(-1))
        return torch.cat(parts, dim=-1)

    def forward(
        self,
        numeric: torch.Tensor,
        categories: torch.Tensor | None = None,
        elapsed: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, T, F) numeric, (B, T, C) long categories, (B, T) elapsed -> (B, T) logits."""
        x = self.visit_inputs(numeric, categories, elapsed)
        if lengths is None:
            out, _ = self.rnn(x)
        else:
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(out).squeeze(-1)
