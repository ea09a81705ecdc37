"""Hyperparameters round trip: each type save_hyperparameters accepts comes back from load_from_checkpoint
with its type and value, the checkpoint still loads with weights_only=True, hparams.yaml reads back, and
what a checkpoint cannot hold is refused (or, for modules and callables, left out) at save_hyperparameters."""

from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import enum
import functools
import subprocess
import sys
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import ember
from ember.checkpoint import CheckpointError
from ember.hparams import AttributeDict, from_plain
from ember.loggers import CSVLogger

omegaconf = pytest.importorskip("omegaconf")
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

EMBER = Path(ember.__file__).parent


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Perm(enum.Flag):
    R = 1
    W = 2


class Holder(ember.Module):
    """Takes one hyperparameter of any type, keeps what __init__ received, and trains a linear layer."""

    def __init__(self, value=None, features: int = 3):
        super().__init__()
        self.save_hyperparameters()
        self.received = value
        self.net = nn.Linear(features, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def data() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=generator)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)


def trainer(tmp_path, **kwargs) -> ember.Trainer:
    options = dict(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                   default_root_dir=tmp_path)
    options.update(kwargs)
    return ember.Trainer(**options)


def fit_and_save(model, tmp_path, **kwargs) -> Path:
    """Fit one step, then save a checkpoint as a user would."""
    fitted = trainer(tmp_path, **kwargs)
    fitted.fit(model, data())
    path = tmp_path / "model.ckpt"
    fitted.save_checkpoint(path)
    return path


def same(a, b) -> bool:
    """Equal values of the same types, all the way down (dict keys, set items and dtypes included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, (np.ndarray, np.generic)):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (DictConfig, ListConfig)):
        return same(OmegaConf.to_container(a, resolve=True), OmegaConf.to_container(b, resolve=True))
    if isinstance(a, argparse.Namespace):
        return same(vars(a), vars(b))
    if isinstance(a, dict):
        return (len(a) == len(b) and all(same(ka, kb) for ka, kb in zip(a, b))
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (set, frozenset)):
        return a == b and sorted(map(repr, a)) == sorted(map(repr, b))
    return a == b


NESTED = {
    "opt": {"betas": (0.9, 0.999), "groups": [{"lr": np.float32(0.1), "tags": {Color.RED, Color.BLUE}}]},
    "paths": (Path("data") / "train", PurePosixPath("/srv")),
    "by_level": {Level.LOW: [1, 2], Level.HIGH: (3,)},
    "shape": torch.Size([3, 4]),
    "weights": torch.tensor([0.25, 0.75]),
    "dtype": torch.bfloat16,
    "config": argparse.Namespace(depth=2, act="relu"),
}

ROUND_TRIPS = {
    "enum": Color.BLUE,
    "int_enum": Level.HIGH,  # an IntEnum must not come back as an int
    "flag_combination": Perm.R | Perm.W,
    "dict_with_int_keys": {1: "one", 2: "two", 10: "ten"},
    "dict_with_other_keys": {2.5: "float", (1, 2): "tuple", None: "none", True: "bool", Color.RED: "enum",
                             frozenset({1}): "frozenset"},
    "dict_with_a_tag_key": {"__ember__": "not a tag", "x": 1},
    "tuple": (0.9, 0.999),
    "path": Path("data") / "train.csv",
    "pure_windows_path": PureWindowsPath(r"C:\data\train"),
    "dtype": torch.float16,
    "device": torch.device("cpu"),
    "numpy_float32": np.float32(0.1),
    "numpy_int64": np.int64(-7),
    "numpy_uint64": np.uint64(2**64 - 1),
    "numpy_bool": np.bool_(True),
    "numpy_datetime": np.datetime64("2024-05-01"),
    "numpy_array": np.arange(6, dtype=np.float32).reshape(2, 3),
    "numpy_big_endian_array": np.array([1, 2, 300], dtype=">u2"),
    "tensor": torch.tensor([[1.5, -2.0]], dtype=torch.float64),
    "set": {3, 1, 2},
    "frozenset": frozenset({"a", "b"}),
    "ordered_dict": collections.OrderedDict([("b", 1), ("a", 2)]),
    "bytes_and_complex": [b"\x00\xff", 1 + 2j],
    "nested": NESTED,
    "dict_config": OmegaConf.create({"model": {"hidden": 8, "act": "relu"}, "width": "${model.hidden}"}),
    "list_config": OmegaConf.create([1, {"a": (2, 3)}]),
    "namespace": argparse.Namespace(lr=0.1, betas=(0.9, 0.99)),
    "attribute_dict": AttributeDict(hidden=4, sizes=(1, 2), inner=AttributeDict(depth=2)),
}


@pytest.mark.parametrize("value", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_each_type_comes_back_from_load_from_checkpoint_with_its_type_and_value(tmp_path, value):
    model = Holder(value)
    assert same(model.hparams.value, value)  # self.hparams holds the value as given
    path = fit_and_save(model, tmp_path)

    loaded = Holder.load_from_checkpoint(path)

    assert same(loaded.received, value), (loaded.received, value)
    assert same(loaded.hparams.value, value)
    assert same(loaded.hparams_initial.value, value)
    assert torch.equal(loaded.net.weight, model.net.weight)


def test_a_dict_config_keeps_its_values_with_interpolations_resolved(tmp_path):
    path = fit_and_save(Holder(ROUND_TRIPS["dict_config"]), tmp_path)
    loaded = Holder.load_from_checkpoint(path).hparams.value
    assert isinstance(loaded, DictConfig) and isinstance(loaded.model, DictConfig)
    assert loaded.width == 8 and loaded.model.act == "relu"


def test_a_lightning_attribute_dict_comes_back_as_lightnings_class(tmp_path):
    data_module = pytest.importorskip("lightning.fabric.utilities.data")
    value = data_module.AttributeDict(hidden=4, inner=data_module.AttributeDict(sizes=(1, 2)))
    path = fit_and_save(Holder(value), tmp_path)
    loaded = Holder.load_from_checkpoint(path).hparams.value
    assert same(loaded, value) and loaded.inner.sizes == (1, 2)


def plain_only(value) -> bool:
    """Only what torch's weights_only loader builds without an allow-list: plain containers and tensors."""
    if isinstance(value, dict):
        return type(value) is dict and all(plain_only(k) and plain_only(v) for k, v in value.items())
    if type(value) in (list, tuple):
        return all(plain_only(v) for v in value)
    return type(value) in (type(None), bool, int, float, str, torch.Tensor)


class Files(ember.DataModule):
    def __init__(self, root: Path = Path("data"), split: tuple = (0.8, 0.2)):
        super().__init__()
        self.save_hyperparameters()

    def train_dataloader(self):
        return data()


def test_the_checkpoint_loads_with_weights_only_and_holds_plain_containers(tmp_path):
    everything = dict(ROUND_TRIPS)
    path = fit_and_save(Holder(everything), tmp_path)
    # and a DataModule's hyperparameters, which the checkpoint holds too
    fitted = trainer(tmp_path / "dm")
    fitted.fit(Holder(everything), datamodule=Files(root=Path("/data") / "images"))
    fitted.save_checkpoint(tmp_path / "dm.ckpt")

    raw = torch.load(path, weights_only=True)
    assert plain_only(raw["hyper_parameters"])
    assert same(from_plain(raw["hyper_parameters"]["value"]), everything)
    raw_dm = torch.load(tmp_path / "dm.ckpt", weights_only=True)
    assert plain_only(raw_dm["datamodule_hyper_parameters"])
    assert same(from_plain(raw_dm["datamodule_hyper_parameters"]),
                {"root": Path("/data/images"), "split": (0.8, 0.2)})
    # the encoding is readable, and ordinary values are stored as they are
    assert raw["hyper_parameters"]["features"] == 3
    assert raw["hyper_parameters"]["value"]["enum"] == {"__ember__": "enum", "class": "test_hparams:Color",
                                                         "name": "BLUE"}
    assert raw["hyper_parameters"]["value"]["tuple"] == (0.9, 0.999)


def test_hparams_yaml_shows_a_readable_value_for_each_type_and_loads_back_typed(tmp_path):
    logger = CSVLogger(tmp_path, name="logs", version=0)
    path = fit_and_save(Holder(NESTED), tmp_path, logger=logger)
    hparams_file = tmp_path / "logs" / "version_0" / "hparams.yaml"
    text = hparams_file.read_text()

    assert yaml.safe_load(text) == {"value": {
        "opt": {"betas": [0.9, 0.999], "groups": [{"lr": 0.1, "tags": ["Color.BLUE", "Color.RED"]}]},
        "paths": [str(Path("data/train")), "/srv"],
        "by_level": {"Level.LOW": [1, 2], "Level.HIGH": [3]},
        "shape": [3, 4],
        "weights": [0.25, 0.75],
        "dtype": "torch.bfloat16",
        "config": {"depth": 2, "act": "relu"},
    }, "features": 3}
    assert "betas: [0.9, 0.999]" in text and "dtype: torch.bfloat16" in text  # a list of numbers on one line
    # the file shows the stored values unchanged, so loading with it keeps their types
    loaded = Holder.load_from_checkpoint(path, hparams_file=hparams_file)
    assert same(loaded.hparams.value, NESTED)


def test_hparams_yaml_summarizes_a_large_tensor(tmp_path):
    logger = CSVLogger(tmp_path, name="logs", version=0)
    fit_and_save(Holder({"table": torch.zeros(10, 10), "half": np.float16(0.3), "lr": np.float32(1e-5)}),
                 tmp_path, logger=logger)
    shown = yaml.safe_load((tmp_path / "logs" / "version_0" / "hparams.yaml").read_text())["value"]
    assert shown == {"table": "tensor(shape=[10, 10], dtype=torch.float32)", "half": 0.3, "lr": 1e-05}


class Opaque:
    pass


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class Settings:
    lr: float = 0.1


def local_enum_member():
    class Local(enum.Enum):
        A = 1

    return Local.A


REFUSED = {
    "object": (Opaque(), r"argument 'value' is a test_hparams\.Opaque"),
    "nested_function": ({"act": F.relu}, r"argument 'value'\['act'\] is the function relu"),
    "enum_defined_in_a_function": (local_enum_member(), r"cannot be found again by its name .*Define the Enum "
                                                        r"at the top level"),
    "namedtuple": (Point(1, 2), r"a Point \(a namedtuple\).*Point\._asdict\(\)"),
    "dataclass": (Settings(), r"dataclasses\.asdict"),
    "object_array": (np.array([Opaque()], dtype=object), r"numpy ndarray of dtype object"),
    "parameter": (nn.Parameter(torch.ones(2)), r"it\.detach\(\)"),
    "in_a_tuple": ((1, Opaque()), r"argument 'value'\[1\] is a test_hparams\.Opaque"),
}


@pytest.mark.parametrize("value,message", list(REFUSED.values()), ids=list(REFUSED))
def test_what_a_checkpoint_cannot_hold_is_refused_at_save_hyperparameters(value, message):
    with pytest.raises(TypeError, match=message) as raised:
        Holder(value)
    text = str(raised.value)
    assert text.startswith("Holder.save_hyperparameters(): ")
    assert "torch.load(weights_only=True)" in text  # why
    assert "self.save_hyperparameters(ignore=['value'])" in text and "load_from_checkpoint(path, value=...)" in text


class Finetuner(ember.Module):
    """Takes a module, an optimizer factory, a class and a function, the shapes Lightning users write."""

    def __init__(self, backbone: nn.Module, make_optimizer=functools.partial(torch.optim.SGD, lr=0.1),
                 activation=nn.Identity, loss_fn=F.mse_loss, lr: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.backbone = backbone
        self.make_optimizer = make_optimizer
        self.activation = activation()
        self.loss_fn = loss_fn
        self.head = nn.Linear(backbone.out_features, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self.head(self.activation(self.backbone(x))), y)

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


def test_modules_and_callables_are_left_out_with_one_warning_and_passed_back_on_load(tmp_path):
    torch.manual_seed(0)
    make_adam = functools.partial(torch.optim.Adam, lr=0.01)
    with pytest.warns(UserWarning) as caught:
        model = Finetuner(nn.Linear(3, 2), make_optimizer=make_adam, activation=nn.Tanh, loss_fn=F.l1_loss)
    [note] = [str(w.message) for w in caught]
    assert "\n" not in note
    for name in ("'backbone' (a Linear module)", "'make_optimizer' (functools.partial(Adam, ...))",
                 "'activation' (the class Tanh)", "'loss_fn' (the function l1_loss)",
                 "Finetuner.load_from_checkpoint(path, backbone=..., make_optimizer=..., activation=..., "
                 "loss_fn=...)", "self.save_hyperparameters(ignore=['backbone', 'make_optimizer', 'activation', "
                 "'loss_fn'])"):
        assert name in note, (name, note)
    # self.hparams keeps them (configure_optimizers may call self.hparams.make_optimizer), checkpoints do not
    assert model.hparams.make_optimizer is make_adam and model.hparams.backbone is model.backbone
    path = fit_and_save(model, tmp_path)
    assert torch.load(path, weights_only=True)["hyper_parameters"] == {"lr": 0.1}

    with pytest.raises(CheckpointError, match=r"does not hold \['backbone'\].*Finetuner\.load_from_checkpoint"
                                              r"\(path, backbone=\.\.\.\)"):
        Finetuner.load_from_checkpoint(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # passing them is what the warning asked: no second warning
        loaded = Finetuner.load_from_checkpoint(path, backbone=nn.Linear(3, 2), make_optimizer=make_adam,
                                                activation=nn.Tanh, loss_fn=F.l1_loss)
    assert torch.equal(loaded.backbone.weight, model.backbone.weight)
    assert isinstance(loaded.activation, nn.Tanh) and loaded.loss_fn is F.l1_loss
    assert loaded.hparams.lr == 0.1 and loaded.hparams.loss_fn is F.l1_loss


def test_callables_at_their_defaults_or_ignored_are_left_out_quietly(tmp_path):
    with pytest.warns(UserWarning, match=r"left out 'backbone' \(a Linear module\): ") as caught:
        model = Finetuner(nn.Linear(3, 2), lr=0.2)  # the defaults need no note, the backbone does
    assert len(caught) == 1 and "make_optimizer" not in str(caught[0].message)
    assert sorted(model.hparams) == ["activation", "backbone", "loss_fn", "lr", "make_optimizer"]

    class Quiet(Finetuner):
        def __init__(self, backbone, lr=0.1):
            ember.Module.__init__(self)
            self.save_hyperparameters(ignore=["backbone"])

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dict(Quiet(nn.Linear(3, 2)).hparams) == {"lr": 0.1}


def test_an_enum_that_cannot_be_imported_is_named_and_can_be_passed_instead(tmp_path):
    path = fit_and_save(Holder(Color.RED), tmp_path)
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["value"]["class"] = "no_such_module_here:Color"
    torch.save(checkpoint, path)

    with pytest.raises(CheckpointError, match=r"hyperparameter 'value' .* the Enum no_such_module_here:Color "
                                              r"cannot be imported here.*Holder\.load_from_checkpoint\(path, "
                                              r"value=\.\.\.\)"):
        Holder.load_from_checkpoint(path)
    assert Holder.load_from_checkpoint(path, value=Color.BLUE).hparams.value is Color.BLUE


def test_decoding_uses_only_enum_classes():
    with pytest.raises(ValueError, match="os:system is not an Enum class here.*refusing"):
        from_plain({"__ember__": "enum", "class": "os:system", "name": "x"})
    with pytest.raises(ValueError, match="is not one of Lightning's AttributeDict classes"):
        from_plain({"__ember__": "AttributeDict", "class": "subprocess.Popen", "items": {}})
    with pytest.raises(ValueError, match="unknown encoding 'pickle'"):
        from_plain({"__ember__": "pickle"})


class FromConfig(ember.Module):
    def __init__(self, cfg, head=None):
        super().__init__()
        self.save_hyperparameters(cfg)
        self.head = head
        self.net = nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.model.lr)


def test_one_config_object_keeps_nested_configs_and_takes_other_arguments_beside_it(tmp_path):
    cfg = OmegaConf.create({"model": {"lr": 0.1, "dims": [2, 3]}, "seed": 1})
    path = fit_and_save(FromConfig(cfg), tmp_path)

    loaded = FromConfig.load_from_checkpoint(path, head="head", seed=2)

    assert isinstance(loaded.hparams.model, DictConfig) and loaded.hparams.model.dims == [2, 3]
    assert loaded.head == "head" and loaded.hparams.seed == 2  # an __init__ argument, and an item of cfg


def test_one_object_must_have_string_keys():
    class Keyed(Holder):
        def __init__(self, table):
            ember.Module.__init__(self)
            self.save_hyperparameters(table)

    with pytest.raises(TypeError, match=r"keys become hyperparameter names.*got \[1\]"):
        Keyed({1: "a"})


@pytest.mark.parametrize("module", ["ember.checkpoint", "ember.hparams"])
def test_checkpoint_and_hparams_import_alone_and_not_each_other(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
    other = {"ember.checkpoint": "ember.hparams", "ember.hparams": "ember.checkpoint"}[module]
    tree = ast.parse((EMBER / f"{module.split('.')[1]}.py").read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert other not in imported, f"{module} imports {other} (not even inside a function)"


class Images(ember.DataModule):
    def __init__(self, transform=None, batch_size: int = 4):
        super().__init__()
        self.save_hyperparameters()


def test_a_datamodule_leaves_a_callable_out_and_says_how_to_load_it_again():
    with pytest.warns(UserWarning, match=r"^Images\.save_hyperparameters\(\) left out 'transform' \(the function "
                                         r"relu\): .* self\.save_hyperparameters\(ignore=\['transform'\]\)") as caught:
        images = Images(transform=F.relu)
    # a DataModule has load_from_checkpoint (Lightning's), which takes the left-out argument again
    assert "Images.load_from_checkpoint(path, transform=...)" in str(caught[0].message)
    assert dict(images.hparams) == {"transform": F.relu, "batch_size": 4}


def test_a_network_and_a_partial_optimizer_train_and_show_one_line_each_in_hparams_yaml(tmp_path):
    class Template(ember.Module):  # lightning-hydra-template's shape
        def __init__(self, net: nn.Module, optimizer, lr_note: float = 0.5):
            super().__init__()
            self.save_hyperparameters(ignore=[])
            self.net = net

        def training_step(self, batch, batch_idx):
            return F.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return self.hparams.optimizer(params=self.parameters())

    with pytest.warns(UserWarning, match="left out 'net'"):
        model = Template(nn.Linear(3, 1), functools.partial(torch.optim.SGD, lr=0.1))
    fitted = ember.Trainer(default_root_dir=tmp_path, max_steps=2, enable_progress_bar=False,
                           enable_model_summary=False, logger=CSVLogger(tmp_path))
    fitted.fit(model, data())
    assert fitted.global_step == 2
    shown = yaml.safe_load(next(tmp_path.rglob("hparams.yaml")).read_text())
    assert shown == {"net": "torch.nn.modules.linear.Linear(...)", "lr_note": 0.5,
                     "optimizer": "functools.partial(torch.optim.sgd.SGD, lr=0.1)"}
    (path,) = tmp_path.rglob("*.ckpt")
    assert torch.load(path, weights_only=True)["hyper_parameters"] == {"lr_note": 0.5}
