"""Typed values as plain data: how a checkpoint stores hyperparameters, and how hparams.yaml shows them.

The encoding (`to_plain`, undone by `from_plain`). A checkpoint loads with
`torch.load(path, weights_only=True)`, which builds tensors and plain containers only. These are stored
as they are:

    None, bool, int, float, str, list, tuple, torch.Tensor (detached, on the CPU), and dicts whose keys
    are themselves stored as they are (str, int, float, bool, None, tuples of these)

and every other accepted value as a tagged dict, `{"__ember__": <tag>, ...}`, whose fields are encoded
in turn (so any nesting works). `<dict>` is a dict encoded as above:

    Enum member           {"__ember__": "enum", "class": "pkg.mod:Color", "name": "RED"}
                          (a Flag: "value": 3 instead of "name", since a combination has no one name)
    dict with other keys  {"__ember__": "dict", "items": [[key, value], ...]}
      (Enum, frozenset) or with an "__ember__" key
    OrderedDict           {"__ember__": "OrderedDict", "items": <dict>}
    ember AttributeDict   {"__ember__": "AttributeDict", "items": <dict>}
    Lightning's one       the same plus "class": "lightning.fabric.utilities.data.AttributeDict"
    argparse.Namespace    {"__ember__": "Namespace", "items": <dict of its attributes>}
    OmegaConf configs     {"__ember__": "DictConfig" or "ListConfig", "items": <its container>}
                          (interpolations resolved when saved)
    set, frozenset        {"__ember__": "set" or "frozenset", "items": [...]} (sorted where sortable)
    torch.Size            {"__ember__": "torch.Size", "items": [3, 4]}
    pathlib path          {"__ember__": "path", "class": "PosixPath", "value": "data/train"}
    torch.dtype           {"__ember__": "torch.dtype", "value": "float32"}
    torch.device          {"__ember__": "torch.device", "value": "cuda:0"}
    numpy scalar          {"__ember__": "numpy.generic", "dtype": "<f4", "value": 0.5}
      (bool, int, float)
    numpy array           {"__ember__": "numpy.ndarray", "dtype": "<f4", "shape": [2, 3],
                           "data": <uint8 tensor of its bytes>} (tag "numpy.generic" for other scalars)
    bytes                 {"__ember__": "bytes", "hex": "00ff"}
    complex               {"__ember__": "complex", "real": 1.0, "imag": 2.0}

Decoding runs nothing the file names but an Enum's module: `from_plain` imports that module, then uses
what it finds only if it is an Enum class. A Lightning AttributeDict comes back as Lightning's class (one
of four allow-listed names) where Lightning is installed, else as ember's.

hparams.yaml (written by the CSV and TensorBoard loggers) shows `readable(value)`: what
`yaml.safe_load` reads back and a person reads, e.g. `color: Color.RED`, `dtype: torch.float32`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import enum
import functools
import importlib
import inspect
import os
import pathlib
import sys
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ember.attribute_dict import LIGHTNING_ATTRIBUTE_DICT_NAMES, AttributeDict

__all__ = ["describe", "from_plain", "omegaconf_kind", "readable", "to_plain"]

TAG = "__ember__"
# tensors and arrays with more elements show in hparams.yaml as their shape and dtype, not their values
_READABLE_ELEMENTS = 16
_PATH_CLASSES = ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath")
_ACCEPTED = ("numbers, strings, None, tensors, lists, tuples, dicts, sets, Enum members, pathlib paths, "
             "torch dtypes and devices, numpy values, argparse Namespaces, AttributeDicts and OmegaConf "
             "configs, nested in any way")


def describe(value: Any) -> str:
    if isinstance(value, nn.Module):
        return f"a {type(value).__name__} module"
    if isinstance(value, type):
        return f"the class {value.__qualname__}"
    if isinstance(value, functools.partial):
        return f"functools.partial({getattr(value.func, '__qualname__', value.func)!s}, ...)"
    if inspect.isroutine(value):
        return f"the function {getattr(value, '__qualname__', value)}"
    return f"a {type(value).__name__}"


# --- the encoding ------------------------------------------------------------------------------------


def to_plain(value: Any, where: str = "hyper_parameters") -> Any:
    """Encode `value` into what `torch.load(weights_only=True)` reads (see the module docstring).

    Raises:
        TypeError: naming `where` (and the path inside it) when a part of `value` cannot be stored.

    Example:
        >>> to_plain({"betas": (0.9, 0.99), "root": pathlib.Path("data")})
        {'betas': (0.9, 0.99), 'root': {'__ember__': 'path', 'class': 'PosixPath', 'value': 'data'}}
    """
    kind = type(value)
    if isinstance(value, enum.Enum):  # before the plain types: an IntEnum is an int
        return _encode_enum(value, where)
    if kind in (type(None), bool, int, float, str):  # exactly: numpy.float64 is a float too
        return value
    if kind is list:
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        return tuple(to_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if kind is dict:
        return _encode_dict(value, where)
    if kind is torch.Tensor:
        return value.detach().cpu()
    if _numpy_kind(value):
        return _encode_numpy(value, where)
    if kind in (set, frozenset):
        return {TAG: kind.__name__, "items": [to_plain(v, f"{where}[{v!r}]") for v in _ordered(value)]}
    if kind is torch.Size:
        return {TAG: "torch.Size", "items": list(value)}
    if kind is AttributeDict:
        return {TAG: "AttributeDict", "items": _encode_dict(value, where)}
    if _lightning_attribute_dict(value):
        return {TAG: "AttributeDict", "class": f"{kind.__module__}.{kind.__qualname__}",
                "items": _encode_dict(value, where)}
    if kind is collections.OrderedDict:
        return {TAG: "OrderedDict", "items": _encode_dict(value, where)}
    if kind is argparse.Namespace:
        return {TAG: "Namespace", "items": _encode_dict(vars(value), where)}
    if omegaconf_kind(value):
        from omegaconf import OmegaConf

        container = OmegaConf.to_container(value, resolve=True)
        return {TAG: omegaconf_kind(value), "items": to_plain(container, where)}
    if kind.__name__ in _PATH_CLASSES and getattr(pathlib, kind.__name__, None) is kind:
        return {TAG: "path", "class": kind.__name__, "value": str(value)}
    if kind is torch.dtype:
        return {TAG: "torch.dtype", "value": str(value).removeprefix("torch.")}
    if kind is torch.device:
        return {TAG: "torch.device", "value": str(value)}
    if kind is bytes:
        return {TAG: "bytes", "hex": value.hex()}
    if kind is complex:
        return {TAG: "complex", "real": value.real, "imag": value.imag}
    raise TypeError(_refusal(value, where))


def _encode_dict(value: Mapping[Any, Any], where: str) -> dict[Any, Any]:
    if TAG not in value and all(_plain_key(k) for k in value):
        return {k: to_plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    return {TAG: "dict", "items": [[to_plain(k, f"{where} key {k!r}"), to_plain(v, f"{where}[{k!r}]")]
                                   for k, v in value.items()]}


def _plain_key(key: Any) -> bool:
    if type(key) in (type(None), bool, int, float, str):
        return True
    return type(key) is tuple and all(_plain_key(k) for k in key)


def _ordered(items: Any) -> list[Any]:
    """A set's items in a fixed order, so that equal sets encode (and show) the same way in every process."""
    try:
        return sorted(items)
    except TypeError:  # items that do not compare (Enum members, mixed types), in the order of their repr
        return sorted(items, key=lambda item: (type(item).__qualname__, repr(item)))


def _encode_enum(value: enum.Enum, where: str) -> dict[str, Any]:
    cls = type(value)
    path = f"{cls.__module__}:{cls.__qualname__}"
    if _lookup(sys.modules.get(cls.__module__), cls.__qualname__) is not cls:
        raise TypeError(
            f"{where} is {value!r}, a member of the Enum {cls.__qualname__}, which cannot be found again "
            f"by its name {path} when the checkpoint loads (it is defined inside a function or replaced; a "
            "checkpoint loads with torch.load(weights_only=True), so it stores an Enum member as its class's "
            "import path and its name). Define the Enum at the top level of a module.")
    if isinstance(value, enum.Flag):  # a combination of flags has no single name
        return {TAG: "enum", "class": path, "value": to_plain(value.value, where)}
    return {TAG: "enum", "class": path, "name": value.name}


def _lookup(module: Any, qualname: str) -> Any:
    found = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _numpy_kind(value: Any) -> str | None:
    """'ndarray' or 'generic' for a numpy array or scalar (without importing numpy for anything else)."""
    if type(value).__module__ != "numpy":
        return None
    import numpy as np

    if type(value) is np.ndarray:
        return "ndarray"
    return "generic" if isinstance(value, np.generic) else None


def _encode_numpy(value: Any, where: str) -> dict[str, Any]:
    import numpy as np

    dtype = value.dtype
    if _numpy_kind(value) == "generic" and dtype.kind in "biuf" and dtype.itemsize <= 8:
        return {TAG: "numpy.generic", "dtype": dtype.str, "value": value.item()}
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufcmMSU":
        raise TypeError(f"{where} is a numpy {type(value).__name__} of dtype {dtype}, which a checkpoint cannot "
                        f"hold (it must load with torch.load(weights_only=True)). Hyperparameters may be "
                        f"{_ACCEPTED}; numpy values of numeric, bool, str or datetime dtypes.")
    array = np.asarray(value)
    data = torch.from_numpy(np.frombuffer(array.tobytes(), dtype=np.uint8).copy())
    return {TAG: "numpy.ndarray" if _numpy_kind(value) == "ndarray" else "numpy.generic",
            "dtype": dtype.str, "shape": list(array.shape), "data": data}


def omegaconf_kind(value: Any) -> str | None:
    kind = type(value)
    if kind.__module__.startswith("omegaconf") and kind.__name__ in ("DictConfig", "ListConfig"):
        return kind.__name__
    return None


def _lightning_attribute_dict(value: Any) -> bool:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}" in LIGHTNING_ATTRIBUTE_DICT_NAMES


def _refusal(value: Any, where: str) -> str:
    if isinstance(value, nn.Module) or callable(value):
        what, fix = describe(value), "Keep modules and callables out of nested hyperparameters."
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        what, fix = f"a {type(value).__name__} (a namedtuple)", f"Pass {type(value).__name__}._asdict() instead."
    elif dataclasses.is_dataclass(value):
        what, fix = f"a {type(value).__name__} (a dataclass)", "Pass dataclasses.asdict(it) instead."
    elif isinstance(value, torch.Tensor):
        what, fix = f"a {type(value).__name__} (a tensor subclass)", "Pass it.detach() (a plain tensor) instead."
    else:
        what, fix = f"a {type(value).__module__}.{type(value).__qualname__}", "Convert it to one of those."
    return (f"{where} is {what}, which a checkpoint cannot hold (it must load with "
            f"torch.load(weights_only=True)). Hyperparameters may be {_ACCEPTED}. {fix}")


# --- decoding ----------------------------------------------------------------------------------------


def from_plain(value: Any) -> Any:
    """Undo `to_plain`: the tagged dicts in `value` become the values they encode.

    Plain values (and a Lightning checkpoint's hyperparameters) pass through unchanged.

    Raises:
        ValueError: a tag is unknown, or an Enum class (or OmegaConf, numpy) cannot be imported here.

    Example:
        >>> from_plain({"__ember__": "path", "class": "PosixPath", "value": "data"})
        PosixPath('data')
    """
    if isinstance(value, dict):
        if TAG in value:
            return _decode_tagged(value)
        return type(value)((k, from_plain(v)) for k, v in value.items())  # dict, AttributeDict, OrderedDict
    if type(value) is list:
        return [from_plain(v) for v in value]
    if type(value) is tuple:
        return tuple(from_plain(v) for v in value)
    if type(value) is argparse.Namespace:
        return argparse.Namespace(**from_plain(vars(value)))
    return value


def _decode_tagged(item: dict[str, Any]) -> Any:
    tag = item[TAG]
    decode = _DECODERS.get(tag)
    if decode is None:
        raise ValueError(f"unknown encoding {tag!r} (written by a newer ember?); this ember reads "
                         f"{sorted(_DECODERS)}")
    return decode(item)


def _decode_pairs(item: dict[str, Any]) -> dict[Any, Any]:
    return {from_plain(k): from_plain(v) for k, v in item["items"]}


def _decode_enum(item: dict[str, Any]) -> enum.Enum:
    module, _, qualname = item["class"].partition(":")
    try:
        cls = _lookup(importlib.import_module(module), qualname)
    except ImportError as err:
        raise ValueError(f"the Enum {item['class']} cannot be imported here ({type(err).__name__}: {err})") from err
    # note: only an Enum class is used; anything else the file names is refused
    if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
        raise ValueError(f"{item['class']} is not an Enum class here (found {cls!r}); refusing to use it")
    if "name" not in item:
        return cls(from_plain(item["value"]))
    try:
        return cls[item["name"]]
    except KeyError:
        raise ValueError(f"the Enum {item['class']} has no member {item['name']!r} here "
                         f"(it has {list(cls.__members__)})") from None


def _decode_attribute_dict(item: dict[str, Any]) -> dict[Any, Any]:
    cls: type = AttributeDict
    name = item.get("class")
    if name is not None:
        if name not in LIGHTNING_ATTRIBUTE_DICT_NAMES:
            raise ValueError(f"{name} is not one of Lightning's AttributeDict classes; refusing to use it")
        module, _, attribute = name.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attribute)
        except ImportError:
            cls = AttributeDict  # Lightning is not installed here: ember's works the same way
    return cls(from_plain(item["items"]))


def _decode_omegaconf(item: dict[str, Any]) -> Any:
    try:
        from omegaconf import OmegaConf
    except ImportError as err:
        raise ValueError(f"an OmegaConf {item[TAG]} cannot be rebuilt without omegaconf: pip install omegaconf") \
            from err
    return OmegaConf.create(from_plain(item["items"]))


def _decode_path(item: dict[str, Any]) -> pathlib.PurePath:
    if item["class"] not in _PATH_CLASSES:
        raise ValueError(f"{item['class']} is not a pathlib class")
    # a concrete path becomes this system's Path, so a checkpoint moves between Linux and Windows
    cls = pathlib.Path if item["class"] in ("PosixPath", "WindowsPath") else getattr(pathlib, item["class"])
    return cls(item["value"])


def _decode_dtype(item: dict[str, Any]) -> torch.dtype:
    dtype = getattr(torch, item["value"], None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"torch has no dtype {item['value']!r} here")
    return dtype


def _decode_numpy(item: dict[str, Any]) -> Any:
    try:
        import numpy as np
    except ImportError as err:
        raise ValueError("a numpy value cannot be rebuilt without numpy: pip install numpy") from err
    dtype = np.dtype(item["dtype"])
    if "value" in item:
        return dtype.type(item["value"])
    array = np.frombuffer(item["data"].numpy().tobytes(), dtype=dtype).reshape(item["shape"]).copy()
    return array if item[TAG] == "numpy.ndarray" else array[()]


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "dict": _decode_pairs,
    "OrderedDict": lambda item: collections.OrderedDict(from_plain(item["items"])),
    "AttributeDict": _decode_attribute_dict,
    "Namespace": lambda item: argparse.Namespace(**from_plain(item["items"])),
    "DictConfig": _decode_omegaconf,
    "ListConfig": _decode_omegaconf,
    "set": lambda item: {from_plain(v) for v in item["items"]},
    "frozenset": lambda item: frozenset(from_plain(v) for v in item["items"]),
    "torch.Size": lambda item: torch.Size(item["items"]),
    "enum": _decode_enum,
    "path": _decode_path,
    "torch.dtype": _decode_dtype,
    "torch.device": lambda item: torch.device(item["value"]),
    "numpy.generic": _decode_numpy,
    "numpy.ndarray": _decode_numpy,
    "bytes": lambda item: bytes.fromhex(item["hex"]),
    "complex": lambda item: complex(item["real"], item["imag"]),
}


# --- hparams.yaml --------------------------------------------------------------------------------------


def readable(value: Any) -> Any:
    """`value` as `yaml.safe_dump` writes it and a person reads it: an Enum member as 'Color.RED', a
    dtype as 'torch.float32', tuples and sets as lists, configs and Namespaces as dicts, small tensors
    and arrays as nested lists (larger ones as their shape and dtype), anything else as its str().

    Example:
        >>> readable({"color": Color.RED, "betas": (0.9, 0.99), "root": pathlib.Path("data")})
        {'color': 'Color.RED', 'betas': [0.9, 0.99], 'root': 'data'}
    """
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}" if value.name is not None else str(value)
    if type(value) in (type(None), bool, int, float, str):
        return value
    if _numpy_kind(value) or isinstance(value, torch.Tensor):
        return _readable_array(value)
    if omegaconf_kind(value):
        from omegaconf import OmegaConf

        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, Mapping):
        return {_readable_key(k): readable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return [readable(v) for v in _ordered(value)]
    if isinstance(value, (list, tuple)):
        return [readable(v) for v in value]
    for plain in (bool, int, float, str):  # subclasses of the plain types, which safe_dump refuses
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, functools.partial):  # (a network or callable kept out of checkpoints: one line)
        arguments = [repr(readable(a)) for a in value.args]
        arguments += [f"{k}={readable(v)!r}" for k, v in value.keywords.items()]
        return f"functools.partial({_qualified(value.func)}, {', '.join(arguments)})"
    if isinstance(value, nn.Module):
        return f"{_qualified(type(value))}(...)"
    if isinstance(value, type) or inspect.isroutine(value):
        return _qualified(value)
    return str(value)


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}".lstrip(".")


def _readable_array(value: Any) -> Any:
    """A tensor or numpy value: small numeric ones as (nested lists of) numbers, others summarized."""
    is_tensor = isinstance(value, torch.Tensor)
    numeric = not value.is_complex() if is_tensor else value.dtype.kind in "biuf"
    if numeric and (value.numel() if is_tensor else value.size) <= _READABLE_ELEMENTS:
        floating = value.dtype.is_floating_point if is_tensor else value.dtype.kind == "f"
        if floating and value.dtype.itemsize < 8:  # 0.1, not the float32's 0.10000000149011612
            return _shortest(value.tolist(), half=str(value.dtype) in ("float16", "torch.float16"))
        return value.tolist()  # a scalar's tolist() is its Python number
    if not value.ndim:
        return str(value)  # a numpy datetime, string or complex scalar
    return f"{'tensor' if is_tensor else 'array'}(shape={list(value.shape)}, dtype={value.dtype})"


def _shortest(values: Any, half: bool) -> Any:
    """Floats of a float16 (`half`) or 4-byte dtype with the fewest digits that read back as the same value
    (bfloat16 values are float32 values too)."""
    import numpy as np

    if isinstance(values, list):
        return [_shortest(v, half) for v in values]
    return float(str((np.float16 if half else np.float32)(values)))


def _readable_key(key: Any) -> Any:
    if type(key) in (type(None), bool, int, float, str):
        return key
    return readable(key) if isinstance(key, enum.Enum) else str(key)
