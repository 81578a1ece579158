"""ABMIL, CLAM-SB/MB and TransMIL: a lab's checkpoint, keyed as the reference code keys it, loads strictly through the
registry; the attention and instance scores match hand-worked values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from core.models.clam import ABMIL, CLAMMB, CLAMSB
from core.models.manifest import ModelManifest, write_manifest
from core.models.registry import file_sha256, load_model
from core.models.transmil import NystromAttention, TransMIL

# Transcribed from mahmoodlab/CLAM models/model_clam.py (size "small", embed_dim 1024): key -> shape.
TRUNK = {"attention_net.0.weight": (512, 1024), "attention_net.0.bias": (512,)}


def gated(k: int) -> dict[str, tuple[int, ...]]:
    return {"attention_net.3.attention_a.0.weight": (256, 512), "attention_net.3.attention_a.0.bias": (256,),
            "attention_net.3.attention_b.0.weight": (256, 512), "attention_net.3.attention_b.0.bias": (256,),
            "attention_net.3.attention_c.weight": (k, 256), "attention_net.3.attention_c.bias": (k,)}


def ungated(k: int, last: int) -> dict[str, tuple[int, ...]]:
    return {"attention_net.3.module.0.weight": (256, 512), "attention_net.3.module.0.bias": (256,),
            f"attention_net.3.module.{last}.weight": (k, 256), f"attention_net.3.module.{last}.bias": (k,)}


def instance(c: int) -> dict[str, tuple[int, ...]]:
    return {key: shape for i in range(c) for key, shape in
            ((f"instance_classifiers.{i}.weight", (2, 512)), (f"instance_classifiers.{i}.bias", (2,)))}


CLAM_SB_KEYS = {**TRUNK, **gated(1), "classifiers.weight": (2, 512), "classifiers.bias": (2,), **instance(2)}
CLAM_SB_UNGATED_DROPOUT_KEYS = {**TRUNK, **ungated(1, 3), "classifiers.weight": (2, 512), "classifiers.bias": (2,), **instance(2)}
CLAM_MB_KEYS = {**TRUNK, **gated(3), **{k: s for c in range(3) for k, s in ((f"classifiers.{c}.weight", (1, 512)),
                                                                            (f"classifiers.{c}.bias", (1,)))}, **instance(3)}
ABMIL_GATED_KEYS = {**TRUNK, **gated(1), "classifiers.weight": (2, 512), "classifiers.bias": (2,)}
ABMIL_UNGATED_KEYS = {**TRUNK, **ungated(1, 2), "classifiers.weight": (2, 512), "classifiers.bias": (2,)}
# szc19990412/TransMIL models/TransMIL.py with nystrom_attention's NystromAttention(dim=512, heads=8, dim_head=64).
TRANSMIL_KEYS = {
    "pos_layer.proj.weight": (512, 1, 7, 7), "pos_layer.proj.bias": (512,), "pos_layer.proj1.weight": (512, 1, 5, 5),
    "pos_layer.proj1.bias": (512,), "pos_layer.proj2.weight": (512, 1, 3, 3), "pos_layer.proj2.bias": (512,),
    "_fc1.0.weight": (512, 1024), "_fc1.0.bias": (512,), "cls_token": (1, 1, 512),
    **{f"layer{n}.{k}": s for n in (1, 2) for k, s in (
        ("norm.weight", (512,)), ("norm.bias", (512,)), ("attn.to_qkv.weight", (1536, 512)),
        ("attn.to_out.0.weight", (512, 512)), ("attn.to_out.0.bias", (512,)), ("attn.res_conv.weight", (8, 1, 33, 1)))},
    "norm.weight": (512,), "norm.bias": (512,), "_fc2.weight": (2, 512), "_fc2.bias": (2,),
}

CASES = [
    ("clam_sb", {"gate": True, "dropout": 0.25, "n_classes": 2, "embed_dim": 1024}, CLAM_SB_KEYS),
    ("clam_sb", {"gate": False, "dropout": 0.25, "n_classes": 2, "embed_dim": 1024}, CLAM_SB_UNGATED_DROPOUT_KEYS),
    ("clam_mb", {"gate": True, "n_classes": 3, "subtyping": True}, CLAM_MB_KEYS),
    ("abmil", {"gate": True}, ABMIL_GATED_KEYS),
    ("abmil", {"gate": False}, ABMIL_UNGATED_KEYS),
    ("transmil", {"n_classes": 2}, TRANSMIL_KEYS),
]


def lab_checkpoint(model_dir: Path, architecture: str, params: dict, keys: dict[str, tuple[int, ...]],
                   extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """A checkpoint as the lab's training script saves it (torch.save of the state dict), and its manifest."""
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in keys.items()}
    model_dir.mkdir(parents=True)
    torch.save({**state, **(extra or {})}, model_dir / "s_0_checkpoint.pt")
    n_classes = params.get("n_classes", 2)
    write_manifest(model_dir, ModelManifest(
        id=model_dir.name, name=architecture, task="mil", architecture=architecture, params=params,
        weights="s_0_checkpoint.pt", weights_sha256=file_sha256(model_dir / "s_0_checkpoint.pt"),
        class_names=[f"class_{i}" for i in range(n_classes)]))
    return state


@pytest.mark.parametrize(("architecture", "params", "keys"), CASES)
def test_lab_checkpoint_loads_strictly_with_reference_keys(tmp_path, architecture, params, keys):
    state = lab_checkpoint(tmp_path / "head", architecture, params, keys)
    loaded = load_model(tmp_path / "head", torch.device("cpu"))
    own = loaded.module.state_dict()
    assert {k: tuple(v.shape) for k, v in own.items()} == keys
    assert all(torch.equal(own[k], state[k]) for k in keys)


def test_clam_checkpoint_with_loss_buffers_and_data_parallel_keys_loads(tmp_path):
    """CLAM's eval_utils drops instance_loss_fn.* and the DataParallel 'module.' before its strict load; so do we."""
    keys = {k.replace("attention_net.", "attention_net.module.", 1): s for k, s in CLAM_SB_KEYS.items()}
    lab_checkpoint(tmp_path / "head", "clam_sb", {"n_classes": 2}, keys, {"instance_loss_fn.labels": torch.arange(2)})
    assert set(load_model(tmp_path / "head", torch.device("cpu")).module.state_dict()) == set(CLAM_SB_KEYS)


def test_a_missing_key_is_refused(tmp_path):
    keys = dict(CLAM_SB_KEYS)
    del keys["instance_classifiers.1.bias"]
    lab_checkpoint(tmp_path / "head", "clam_sb", {"n_classes": 2}, keys)
    with pytest.raises(Exception, match=r"(?s)weights do not fit architecture clam_sb.*instance_classifiers\.1\.bias"):
        load_model(tmp_path / "head", torch.device("cpu"))


BAG = torch.tensor([[1.0, 0.0], [2.0, 1.0], [0.5, 3.0]])


def set_tiny_weights(model: ABMIL | CLAMSB) -> None:
    """h = ReLU(x) on units 0 and 1 (others 0); gated score = tanh(h_0) * sigmoid(h_1); instance classifier 1's
    positive logit = h_0 (so its score is sigmoid(h_0)), classifier 0's = -h_0."""
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        net = model.attention_net
        net[0].weight[0, 0] = net[0].weight[1, 1] = 1.0
        net[3].attention_a[0].weight[0, 0] = 1.0
        net[3].attention_b[0].weight[0, 1] = 1.0
        net[3].attention_c.weight[0, 0] = 1.0
        model.classifiers.weight[1, 0] = 1.0
        if isinstance(model, CLAMSB):
            model.instance_classifiers[1].weight[1, 0] = 1.0
            model.instance_classifiers[0].weight[1, 0] = -1.0


def test_abmil_gated_attention_by_hand():
    model = ABMIL(gate=True, embed_dim=2).eval()
    set_tiny_weights(model)
    with torch.no_grad():
        logits, raw = model(BAG)
    # scores: tanh(1) * sigmoid(0), tanh(2) * sigmoid(1), tanh(0.5) * sigmoid(3)
    scores = [math.tanh(1) * 0.5, math.tanh(2) / (1 + math.exp(-1)), math.tanh(0.5) / (1 + math.exp(-3))]
    assert raw[0].tolist() == pytest.approx([0.380797, 0.704761, 0.440201], abs=1e-5)
    assert raw[0].tolist() == pytest.approx(scores, abs=1e-6)
    total = sum(math.exp(s) for s in scores)
    weights = [math.exp(s) / total for s in scores]  # e^s = 1.4634, 2.0234, 1.5530; sum 5.0398
    assert weights == pytest.approx([0.2904, 0.4015, 0.3081], abs=1e-4)
    # bag logit of class 1 = attention-weighted mean of h_0 = sum a_i x_i0
    assert float(logits[1]) == pytest.approx(sum(w * x for w, x in zip(weights, (1.0, 2.0, 0.5))), abs=1e-6)
    assert float(logits[0]) == 0.0


def test_clam_instance_scores_by_hand():
    model = CLAMSB(gate=True, n_classes=2, embed_dim=2).eval()
    set_tiny_weights(model)
    with torch.no_grad():
        scores = model.instance_scores(BAG)
    # class 1: softmax([0, h_0])[1] = sigmoid(h_0); class 0: sigmoid(-h_0)
    assert scores[:, 1].tolist() == pytest.approx([0.731059, 0.880797, 0.622459], abs=1e-6)
    assert scores[:, 0].tolist() == pytest.approx([0.268941, 0.119203, 0.377541], abs=1e-6)


@pytest.mark.parametrize("chunk", [4096, 3])
def test_clam_mb_logit_per_branch_as_clam_computes_it(monkeypatch, chunk):
    """CLAM: A = attention_net(h) transposed, M = softmax(A) h, logit_c = classifiers[c](M_c); the streaming softmax over
    chunks of 3 patches gives the same."""
    monkeypatch.setattr("core.models.clam.CHUNK", chunk)
    model = CLAMMB(gate=True, n_classes=3, embed_dim=8).eval()
    bag = torch.randn(10, 8, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        logits, raw = model(bag)
        h = model.attention_net[:3](bag)
        clam_raw = model.attention_net[3](h).T
        m = torch.softmax(clam_raw, dim=1) @ h
        expected = [float(model.classifiers[c](m[c])) for c in range(3)]
        instances = model.instance_scores(bag)
    assert raw.shape == (3, 10) and torch.allclose(raw, clam_raw, atol=1e-6)
    assert logits.tolist() == pytest.approx(expected, abs=1e-5)
    assert torch.allclose(instances[:, 2], torch.softmax(model.instance_classifiers[2](h), dim=1)[:, 1], atol=1e-6)


def test_nystrom_with_as_many_landmarks_as_tokens_is_exact_softmax_attention():
    """With m = n each landmark is one token, so softmax(QK^T) pinv(softmax(QK^T)) softmax(QK^T) V = softmax(QK^T) V."""
    torch.manual_seed(0)
    attn = NystromAttention(dim=16, dim_head=4, heads=2, num_landmarks=6, pinv_iterations=30, residual=False).eval()
    x = torch.randn(1, 6, 16)
    with torch.no_grad():
        q, k, v = (t.reshape(1, 6, 2, 4).transpose(1, 2) for t in attn.to_qkv(x).chunk(3, dim=-1))
        exact = torch.softmax(q @ k.transpose(-1, -2) * 4 ** -0.5, dim=-1) @ v
        expected = attn.to_out(exact.transpose(1, 2).reshape(1, 6, 8))
        assert torch.allclose(attn(x), expected, atol=1e-4)


def test_transmil_forward_on_a_bag():
    model = TransMIL(n_classes=3, in_dim=32).eval()
    with torch.no_grad():
        logits = model(torch.randn(300, 32))  # more tokens than the 256 landmarks: padded to a multiple of them
    assert logits.shape == (3,) and torch.isfinite(logits).all()
