"""Model registry: faithful round trips, and refusal of tampered or code-carrying checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from core.errors import ModelLoadError
from core.models.manifest import read_manifest, write_manifest
from core.models.registry import file_sha256, load_model, save_model
from core.models.sequence import VisitSequenceNet

FIELDS = {
    "id": "seq", "name": "test net", "task": "sequence", "architecture": "visit_sequence_net",
    "params": {"n_numeric": 3, "category_sizes": [2], "cell": "lstm", "hidden": 8, "bidirectional": True},
    "class_names": ["no", "yes"],
}


def _inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 4, 3, generator=g), torch.zeros(2, 4, 1, dtype=torch.long), torch.rand(2, 4, generator=g)


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    net = VisitSequenceNet(**FIELDS["params"]).eval()
    save_model(tmp_path / "seq", FIELDS, net)
    return tmp_path / "seq", net


def test_saved_model_loads_with_identical_outputs(saved):
    folder, net = saved
    loaded = load_model(folder, torch.device("cpu"))
    assert loaded.manifest.weights_sha256 == file_sha256(folder / "weights.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded.module(*_inputs()), net(*_inputs()))


def test_wrong_hash_is_refused(saved):
    folder, _ = saved
    with open(folder / "weights.safetensors", "r+b") as fh:  # flip one byte of the weights
        fh.seek(-1, 2)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(ModelLoadError, match="does not match its manifest"):
        load_model(folder, torch.device("cpu"))


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-checkpoint",))


def test_code_carrying_checkpoint_is_refused_and_never_runs(saved, tmp_path, monkeypatch):
    folder, net = saved
    monkeypatch.chdir(tmp_path)
    evil = folder / "weights.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"state": _RunsCode()}, fh)
    manifest = read_manifest(folder).model_copy(update={"weights": "weights.pt", "weights_sha256": file_sha256(evil)})
    write_manifest(folder, manifest)
    with pytest.raises(ModelLoadError, match="refused to load weights.pt"):
        load_model(folder, torch.device("cpu"))
    assert not (tmp_path / "pwned-by-checkpoint").exists()


def test_plain_state_dict_pt_is_accepted(saved):
    folder, net = saved
    torch.save(net.state_dict(), folder / "weights.pt")
    manifest = read_manifest(folder).model_copy(update={"weights": "weights.pt", "weights_sha256": file_sha256(folder / "weights.pt")})
    write_manifest(folder, manifest)
    with torch.no_grad():
        assert torch.equal(load_model(folder, torch.device("cpu")).module(*_inputs()), net(*_inputs()))


def test_manifest_errors_are_clear(saved):
    folder, _ = saved
    text = (folder / "model.toml").read_text()
    (folder / "model.toml").write_text(text + '\nsurprise = "key"\n')
    with pytest.raises(ModelLoadError, match="surprise"):
        read_manifest(folder)
    (folder / "model.toml").write_text(text.replace('architecture = "visit_sequence_net"', 'architecture = "no_such_net"'))
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        load_model(folder, torch.device("cpu"))
    (folder / "model.toml").write_text(text.replace('architecture = "visit_sequence_net"', 'architecture = "tests.lab_models:tiny_visit_net"'))
    assert load_model(folder, torch.device("cpu")).module.rnn.hidden_size == 8  # a lab's own factory by import path
