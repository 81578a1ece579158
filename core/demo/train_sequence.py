"""Training the demo's visit-sequence net on training patients: weight decay, early stopping on a validation split of
patients, then temperature scaling on that split so that its probabilities are calibrated rather than saturated."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from core.demo.reproducible import reproducible_torch
from core.models.sequence import VisitSequenceNet
from core.models.visit_encoding import VisitTensors

PATIENCE_EPOCHS = 30  # stop when the validation loss has not improved for this many epochs
WARM_UP_EPOCHS = 20  # a few validation patients are noisy: the best epoch is looked for only after these
WEIGHT_DECAY = 1e-2


def subset(data: VisitTensors, index: np.ndarray) -> VisitTensors:
    idx = torch.from_numpy(np.asarray(index, dtype=np.int64))
    return VisitTensors(*(getattr(data, f)[idx] for f in ("numeric", "categories", "elapsed", "lengths", "labels")))


def _logits(model: VisitSequenceNet, data: VisitTensors) -> torch.Tensor:
    return model(data.numeric, data.categories, data.elapsed, data.lengths)


def _loss(model: VisitSequenceNet, data: VisitTensors, loss_fn: nn.Module) -> torch.Tensor:
    mask = data.labels >= 0
    return loss_fn(_logits(model, data)[mask], data.labels[mask])


def train_sequence_net(train: VisitTensors, validation: VisitTensors, params: dict, max_epochs: int, seed: int,
                       progress: Callable[[str], None]) -> tuple[VisitSequenceNet, float]:
    """The net at the epoch of lowest validation loss, with the temperature calibration found on the validation split
    folded into its output layer (logits divided by T); returns (net, T)."""
    with reproducible_torch(threads=1):  # a net this small trains faster on one thread than on several
        return _train(train, validation, params, max_epochs, seed, progress)


def _train(train: VisitTensors, validation: VisitTensors, params: dict, max_epochs: int, seed: int,
           progress: Callable[[str], None]) -> tuple[VisitSequenceNet, float]:
    torch.manual_seed(seed)
    model = VisitSequenceNet(**params)
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.BCEWithLogitsLoss()
    best, best_state, since_best = float("inf"), {k: v.clone() for k, v in model.state_dict().items()}, 0
    for epoch in range(max_epochs):
        model.train()
        order = torch.randperm(len(train.lengths))
        for start in range(0, len(order), 8):
            loss = _loss(model, subset(train, order[start : start + 8].numpy()), loss_fn)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            val = float(_loss(model, validation, loss_fn))
        if epoch + 1 >= WARM_UP_EPOCHS and val < best - 1e-4:
            best, best_state, since_best = val, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            since_best += 1
        if since_best >= PATIENCE_EPOCHS:
            progress(f"sequence net: early stop at epoch {epoch + 1}, best validation loss {best:.3f}")
            break
    model.load_state_dict(best_state)
    model.eval()
    temperature = fit_temperature(model, validation)
    with torch.no_grad():
        model.head.weight.div_(temperature)
        model.head.bias.div_(temperature)
    progress(f"sequence net: temperature {temperature:.2f} fitted on the validation patients")
    return model, temperature


def fit_temperature(model: VisitSequenceNet, data: VisitTensors) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising the validation negative log-likelihood of
    sigmoid(logit / T); T is searched on log T by bounded golden-section, so the fit is deterministic."""
    with torch.no_grad():
        mask = data.labels >= 0
        logits, labels = _logits(model, data)[mask].double(), data.labels[mask].double()

    def nll(log_t: float) -> float:
        return float(nn.functional.binary_cross_entropy_with_logits(logits / np.exp(log_t), labels))

    lo, hi = np.log(0.25), np.log(20.0)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


@torch.no_grad()
def visit_risks(model: VisitSequenceNet, data: VisitTensors) -> torch.Tensor:
    """(B, T) probability of the event at each visit."""
    return torch.sigmoid(_logits(model, data))


def feature_standardisation(values: np.ndarray) -> tuple[list[float], list[float]]:
    return values.mean(0).round(4).tolist(), np.maximum(values.std(0), 1e-3).round(4).tolist()
