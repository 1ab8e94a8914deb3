"""Model files: device-neutral, pickle-free, checksummed, atomic.

A file is a NumPy ``.npz`` holding only plain numeric arrays:

``meta``           uint8 array of UTF-8 JSON (format, version, network config,
                   normalization, training config, array list, SHA-256 checksum)
``param/W1`` ...   the network's weights and biases
``optim/...``      optimizer state (resumable checkpoints only: :mod:`mlp_xp.train.checkpoint`)
``best/W1`` ...    early stopping's best parameters so far (checkpoints of runs with patience)

It is read by :class:`~mlp_xp.npyfile.NpzReader`, which checks each array's
declared dtype and shape against the archive and the metadata before reading
it and never unpickles; any object array, pickle payload, size a header claims
but the file does not hold, unknown format version, checksum mismatch or
truncation is refused with a :class:`~mlp_xp.errors.ModelFileError`. A model
trained on CuPy loads where CuPy cannot even be imported. Writes go through a
temp file, fsync and rename.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

from .backends import Backend
from .errors import ConfigError, DeviceError, MlpXpError, ModelFileError, first_line
from .fileio import atomic_write
from .model import MLP
from .npyfile import NpzReader

__all__ = [
    "save_model",
    "load_model",
    "read_file",
    "write_file",
    "build_model",
    "param_arrays",
    "FORMAT_VERSION",
]

FORMAT = "mlp_xp"
FORMAT_VERSION = 1


def _checksum(arrays: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_file(path: str | os.PathLike, kind: str, meta: dict, arrays: dict) -> Path:
    """Write ``arrays`` (host NumPy) with ``meta`` as an atomic, checksummed ``.npz``."""
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    full_meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        **meta,
        "arrays": {k: {"dtype": v.dtype.str, "shape": list(v.shape)} for k, v in arrays.items()},
        "checksum": {"algorithm": "sha256", "value": _checksum(arrays)},
    }
    blob = np.frombuffer(json.dumps(full_meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)

    def write(fh: IO[bytes]) -> None:
        buf = io.BytesIO()
        np.savez(buf, meta=blob, **arrays)
        fh.write(buf.getvalue())

    return atomic_write(path, write)


def read_file(path: str | os.PathLike) -> tuple[dict, dict]:
    """Read and verify a model/checkpoint file: ``(meta, arrays)`` as host data.

    Every array's ``.npy`` header is checked before any data is read: against
    the archive (:class:`~mlp_xp.npyfile.NpzReader`: a numeric dtype, exactly the
    bytes its shape needs, inside the file) and against the file's own metadata
    (its list of arrays with their dtypes and shapes). Then the SHA-256 of the
    arrays must match the stored one.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    with NpzReader(path) as npz:
        header = npz.members.get("meta")
        if header is None or header.dtype != np.uint8 or len(header.shape) != 1:
            raise ModelFileError(f"{path}: not an mlp_xp model file (no metadata)")
        meta = _decode_meta(path, npz.read("meta"))
        declared = {name: m for name, m in npz.members.items() if name != "meta"}
        listed = meta.get("arrays")
        if not isinstance(listed, dict) or set(listed) != set(declared):
            raise ModelFileError(f"{path}: the arrays in the file do not match its metadata")
        for name, member in declared.items():
            spec = listed[name]
            if (
                not isinstance(spec, dict)
                or spec.get("dtype") != member.dtype.str
                or spec.get("shape") != list(member.shape)
            ):
                raise ModelFileError(f"{path}: array {name!r} does not match its metadata")
        loaded = {name: npz.read(name) for name in declared}
    checksum = meta.get("checksum")
    if not isinstance(checksum, dict) or checksum.get("value") != _checksum(loaded):
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupt or was modified")
    return meta, loaded


def _decode_meta(path: Path, blob: Any) -> dict:
    if blob is None or blob.dtype != np.uint8 or blob.ndim != 1:
        raise ModelFileError(f"{path}: not an mlp_xp model file (no metadata)")
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: unreadable metadata") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an mlp_xp model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelFileError(f"{path}: missing format version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: written in model format version {version}; this mlp_xp "
            f"reads up to version {FORMAT_VERSION} (upgrade mlp-xp)"
        )
    if version < 1:
        raise ModelFileError(f"{path}: unknown model format version {version}")
    return meta


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------


def param_arrays(model: MLP) -> dict:
    """The model's parameters as the file's ``param/...`` host arrays."""
    return {f"param/{k}": v for k, v in model.params_numpy().items()}


def save_model(path: str | os.PathLike, model: MLP, **meta: Any) -> Path:
    """Save a trained network (parameters + config + any extra JSON-able ``meta``).

    Typical ``meta`` keys: ``normalization``, ``training``, ``data``.
    """
    merged = {**model.meta, **meta, "model": model.config()}
    calibration = _calibration_record(merged.get("calibration"), model.temperature)
    merged.pop("calibration", None)
    if calibration is not None:
        merged["calibration"] = calibration
    return write_file(path, "model", merged, param_arrays(model))


def _calibration_record(record: Any, temperature: Any) -> dict | None:
    """What the file says of calibration: ``model.temperature`` is the one source.

    A record made at this temperature (by ``mlp-xp train``) is kept whole; a temperature
    set on the model since then replaces it, so the figures of another temperature are
    not saved beside it.
    """
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        temperature = math.nan
    if not 0 < temperature < math.inf:
        raise ConfigError(f"the model's temperature must be a finite number > 0, got {temperature}")
    if isinstance(record, dict) and record.get("temperature") == temperature:
        return record
    if temperature == 1.0:
        return None
    return {"temperature": temperature, "fitted_on": "set on the model (MLP.temperature)"}


def build_model(
    path: str | os.PathLike, meta: dict, arrays: dict, backend: str | Backend | None
) -> MLP:
    """The network described by a file's ``meta`` and ``param/...`` arrays, on ``backend``."""
    params = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("param/")}
    config = meta.get("model")
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: metadata has no network description")
    try:
        model = MLP.from_params(config, params, backend)
    except (ModelFileError, DeviceError):
        raise
    except MlpXpError as exc:
        raise ModelFileError(f"{path}: inconsistent network description ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: inconsistent network description ({first_line(exc, 160)})"
        ) from None
    model.meta = {
        k: v
        for k, v in meta.items()
        if k not in ("arrays", "checksum", "model", "optimizer", "state")
    }
    calibration = meta.get("calibration")
    if isinstance(calibration, dict):
        t = calibration.get("temperature")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t < math.inf:
            raise ModelFileError(f"{path}: unusable calibration temperature {t!r}")
        model.temperature = float(t)
    return model


def load_model(path: str | os.PathLike, backend: str | Backend | None = None) -> MLP:
    """Load a model (or the network inside a checkpoint) onto ``backend``.

    Parameters
    ----------
    path : str or Path
    backend : str or Backend, optional
        Where to put it (default ``auto``); independent of where it was trained.

    Returns
    -------
    MLP
        With ``model.meta`` holding the stored normalization/training metadata.
    """
    meta, arrays = read_file(path)
    return build_model(path, meta, arrays, backend)
