"""Predictor: a checkpoint and a Module class give the trained model's outputs, in any batching, with no
Trainer."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.checkpoint import CheckpointError


class Classifier(ember.Module):
    def __init__(self, features: int = 4, hidden: int = 16, classes: int = 3, dropout: float = 0.5):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.BatchNorm1d(hidden), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.01)


def data(n: int = 64) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=generator)
    return TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A classifier trained for two epochs (dropout and batch norm make eval mode matter) and its checkpoint."""
    root = tmp_path_factory.mktemp("predictor")
    torch.manual_seed(0)
    model = Classifier()
    trainer = ember.Trainer(max_epochs=2, default_root_dir=root, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(data(), batch_size=16, shuffle=True))
    path = root / "classifier.ckpt"
    trainer.save_checkpoint(path)
    model.eval()
    return model, path


def test_predictions_equal_the_trained_model(trained):
    model, path = trained
    x = data(50).tensors[0]
    predictor = ember.Predictor.from_checkpoint(Classifier, path, batch_size=50)
    with torch.no_grad():
        expected = model(x)
    out = predictor(x)
    assert torch.equal(out, expected)
    assert out.shape == (50, 3)
    assert not predictor.model.training
    assert not any(p.requires_grad for p in predictor.model.parameters())
    assert predictor.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")


def test_batching_does_not_change_results(trained):
    model, path = trained
    x = data(50).tensors[0]
    whole = ember.Predictor.from_checkpoint(Classifier, path, device="cpu", batch_size=64).predict(x)
    for batch_size in (1, 7, 16):
        predictor = ember.Predictor.from_checkpoint(Classifier, path, device="cpu", batch_size=batch_size)
        assert torch.allclose(predictor(x), whole, rtol=0, atol=1e-6)
        assert torch.allclose(predictor(list(x)), whole, rtol=0, atol=1e-6)  # samples, collated
    loader = DataLoader(x, batch_size=9)  # batches of tensors, as predict_step(batch) -> self(batch) takes
    from_loader = ember.Predictor.from_checkpoint(Classifier, path, device="cpu")(loader)
    assert torch.allclose(from_loader, whole, rtol=0, atol=1e-6)


def test_outputs_come_back_in_the_shape_predict_step_gives(tmp_path):
    class Tagger(Classifier):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            logits = self(batch)
            return {"logits": logits, "label": logits.argmax(1)}

    class Namer(Classifier):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            return [f"class {int(i)}" for i in self(batch).argmax(1)]

    x = data(10).tensors[0]
    torch.manual_seed(0)
    tagged = ember.Predictor(Tagger(), device="cpu", batch_size=4)(x)
    assert tagged["logits"].shape == (10, 3) and tagged["label"].shape == (10,)
    torch.manual_seed(0)
    named = ember.Predictor(Namer(), device="cpu", batch_size=4)(x)
    assert len(named) == 10 and named[0].startswith("class ")


def test_a_plain_module_and_several_inputs(tmp_path):
    class Pair(nn.Module):
        def forward(self, a, b):
            return a * 2 + b

    a, b = torch.arange(10.0), torch.ones(10)
    assert torch.equal(ember.Predictor(Pair(), device="cpu", batch_size=3)((a, b)), a * 2 + b)


def test_inference_mode(trained):
    seen = []

    class Probe(Classifier):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            seen.append(torch.is_inference_mode_enabled())
            return self(batch)

    ember.Predictor(Probe(), device="cpu")(torch.randn(3, 4))
    assert seen == [True]


def test_the_callers_model_keeps_its_modes_and_requires_grad():
    model = Classifier()
    model.train()
    model.net[3].eval()  # a submodule in eval mode on its own, as when a batch norm is frozen
    model.net[0].requires_grad_(False)
    training = {name: m.training for name, m in model.named_modules()}
    requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
    seen = []

    class Probe(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            seen.append([m.training for m in self.inner.modules()])
            return self.inner(x)

    x = data(20).tensors[0]
    with torch.no_grad():
        expected = model.eval()(x)
    model.train()
    model.net[3].eval()
    out = ember.Predictor(Probe(model), device="cpu", batch_size=8)(x)

    assert torch.equal(out, expected)  # dropout off, batch norm on its running statistics
    assert seen and not any(any(flags) for flags in seen)
    assert {name: m.training for name, m in model.named_modules()} == training
    assert {name: p.requires_grad for name, p in model.named_parameters()} == requires_grad


def test_the_modes_come_back_when_the_model_raises():
    class Failing(Classifier):
        def predict_step(self, batch, batch_idx, dataloader_idx=0):
            raise RuntimeError("boom")

    model = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        ember.Predictor(model, device="cpu")(torch.randn(3, 4))
    assert all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())


def test_overrides_replace_the_checkpoint_hyperparameters(trained):
    _, path = trained
    predictor = ember.Predictor.from_checkpoint(Classifier, path, device="cpu", dropout=0.0)
    assert predictor.model.hparams.dropout == 0.0


def test_a_mismatched_checkpoint_says_what_differs(trained):
    _, path = trained
    with pytest.raises(CheckpointError) as info:
        ember.Predictor.from_checkpoint(Classifier, path, hidden=8)
    message = str(info.value)
    assert f"The weights in the checkpoint {str(path)!r} do not match Classifier." in message
    assert "different shapes (7): net.0.weight: checkpoint (16, 4) vs model (8, 4)" in message


def test_bad_inputs_say_what_is_expected(trained):
    predictor = ember.Predictor(Classifier(), device="cpu")
    with pytest.raises(TypeError, match="Predictor got a dict; expected a tensor"):
        predictor({"x": torch.randn(2, 4)})
    with pytest.raises(ValueError, match="0-dimensional tensor"):
        predictor(torch.tensor(1.0))
    with pytest.raises(ValueError, match="batch_size=0"):
        ember.Predictor(Classifier(), batch_size=0)
    with pytest.raises(TypeError, match="expects the Module class"):
        ember.Predictor.from_checkpoint(Classifier(), "x.ckpt")


def test_import_ember_does_not_import_the_predictor_or_the_tuner():
    code = ("import sys, ember; assert 'ember.predictor' not in sys.modules; "
            "assert 'ember.tuner' not in sys.modules; ember.Predictor; ember.tuner.Tuner")
    subprocess.run([sys.executable, "-c", code], check=True)
