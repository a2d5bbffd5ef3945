"""Saving a trained model with its architecture, and loading one back safely.

A checkpoint is `torch.save` of one plain dict, readable by plain torch.load:

    {"format": "cnnviz-checkpoint", "version": 1,
     "stack": "conv3x8,relu,maxpool2,...",        # cnnviz.network text form
     "in_shape": [C, H, W],
     "classes": ["T-shirt/top", ...],            # one name per output of the last layer
     "dataset": "fashion-mnist",
     "state_dict": {name: tensor},               # of build_model(stack, in_shape)
     "metrics": {"test_accuracy": 0.87, ...}}    # plain finite numbers

Loading never runs code from the file: `torch.load(weights_only=True)` only rebuilds
tensors, dicts, lists, strings and numbers, and everything else (a pickle that would call
`os.system`, say) is refused. Nor does a file get to claim memory: it is first read with
`map_location="meta"`, which gives every tensor's shape, dtype, strides and storage size
without reading any data, and all of those must be exactly what the declared stack needs
(a 119 kB file may claim a 40000×40000 weight as a view with stride 0) before the weights
are read for real. Every way a file can be wrong — not a checkpoint, cut short, crafted,
from a newer version, weights that do not fit the stack — raises `CheckpointError` with a
message meant for the person who uploaded it; so does anything else a load can raise.

The model's input is the image as float32 in [0, 1] (uint8 pixels / 255), shape
(N, C, H, W); `Checkpoint.prepare` does that conversion.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import notation
from .network import (
    BYTES_PER_NUMBER,
    MAX_LAYERS,
    MAX_OUT,
    MAX_PARAMS,
    StackError,
    analyse,
    build_model,
    parse_stack,
)

FORMAT = "cnnviz-checkpoint"
VERSION = 1
MAX_CLASSES = 4096
MAX_TEXT = 200  # characters of a class or data-set name

# The largest file accepted, in Streamlit's megabytes (MiB): .streamlit/config.toml's
# server.maxUploadSize says the same, so every checkpoint the training page makes can be
# uploaded again (tests/test_checkpoint.py checks both against largest_checkpoint_bytes()).
MAX_CHECKPOINT_MB = 256
MAX_CHECKPOINT_BYTES = MAX_CHECKPOINT_MB * 1024 * 1024
# torch.save writes data.pkl (the dict without the tensor data) and one record per tensor.
# The pickle of the largest checkpoint (4096 class names of 200 characters) is under 1 MB,
# and a stack of 48 layers has at most 4 tensors a layer; far bigger numbers only come
# from crafted files, which would cost memory to unpack.
MAX_PICKLE_BYTES = 4 * 1024 * 1024
MAX_ARCHIVE_ENTRIES = 1000
RECORD_OVERHEAD_BYTES = 1024  # zip headers, the central directory entry and alignment of one record


def largest_checkpoint_bytes() -> int:
    """An upper bound on the size of a checkpoint the training page can make.

    cnnviz.network allows MAX_PARAMS parameters (float32). Besides parameters a state dict
    holds batch norm's running mean and variance (float32) and its int64 step counter, at
    most one batch norm of MAX_OUT channels per layer. Each tensor is one record of the
    archive; the pickle holds the names.
    """
    buffers = MAX_LAYERS * (2 * MAX_OUT * BYTES_PER_NUMBER + 8)
    records = 5 * MAX_LAYERS + 8  # batch norm's 5 tensors at most a layer, and the archive's own
    return MAX_PARAMS * BYTES_PER_NUMBER + buffers + records * RECORD_OVERHEAD_BYTES + MAX_PICKLE_BYTES


class CheckpointError(ValueError):
    """A file that cannot be used as a checkpoint; the message says why, in plain words."""


@dataclass
class Checkpoint:
    """A trained model: its stack, input shape, class names, weights and how well it did."""

    stack: str
    in_shape: tuple[int, int, int]
    classes: list[str]
    dataset: str
    state_dict: dict[str, torch.Tensor]
    metrics: dict[str, float] = field(default_factory=dict)

    # ------------------------------------------------------------------ making one

    @classmethod
    def from_model(cls, model: nn.Module, stack: str, in_shape, classes, dataset: str,
                   metrics: Mapping[str, float] | None = None) -> Checkpoint:
        """Snapshot `model`'s weights (copied to the CPU, detached) with its description.

        A metric that could not be measured (NaN or infinite) is left out, not stored."""
        state = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in model.state_dict().items()}
        measured = {str(k): float(v) for k, v in (metrics or {}).items() if math.isfinite(float(v))}
        ckpt = cls(stack, tuple(int(n) for n in in_shape), [str(c) for c in classes], str(dataset), state, measured)
        ckpt.validate()
        return ckpt

    def to_dict(self) -> dict[str, Any]:
        """The plain dict that goes into the file (only tensors, strings, numbers, lists, dicts)."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "stack": self.stack,
            "in_shape": [int(n) for n in self.in_shape],
            "classes": list(self.classes),
            "dataset": self.dataset,
            "state_dict": dict(self.state_dict),
            "metrics": {k: float(v) for k, v in self.metrics.items()},
        }

    # ------------------------------------------------------------------ using one

    @property
    def specs(self):
        return parse_stack(self.stack)

    @property
    def test_accuracy(self) -> float | None:
        value = self.metrics.get("test_accuracy")
        return None if value is None else float(value)

    def build_model(self) -> nn.Sequential:
        """The stack as a torch model on the CPU, weights loaded, in eval mode."""
        try:
            model = build_model(self.stack, self.in_shape)
        except StackError as error:
            raise CheckpointError(f"The checkpoint's stack cannot be built: {error}") from None
        _check_weights(self.state_dict, model.state_dict())
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) or (C, H, W) -> the float input the model was trained on."""
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if tuple(images.shape[1:]) != tuple(self.in_shape):
            raise CheckpointError(f"The model takes {notation.shape(self.in_shape)} images, "
                                  f"not {notation.shape(images.shape[1:])}.")
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        return images.float()

    def summary(self) -> str:
        """One line for captions: stack, data set and accuracy."""
        acc = self.test_accuracy
        acc_text = f", test accuracy {notation.percent(acc)}" if acc is not None else ""
        return (f"{self.stack} on {self.dataset} ({notation.shape(self.in_shape)}, "
                f"{notation.count(len(self.classes))} classes{acc_text})")

    def validate(self) -> None:
        """Raise CheckpointError unless every field is well-formed and the weights fit the stack."""
        _validate_fields(self.to_dict())
        _check_weights(self.state_dict, _expected_weights(self.stack, self.in_shape))
        _check_finite(self.state_dict)


# ---------------------------------------------------------------------- save / load


def save_checkpoint(ckpt: Checkpoint) -> bytes:
    """The checkpoint as the bytes of a torch.save file (for st.download_button or a file)."""
    ckpt.validate()
    buffer = io.BytesIO()
    torch.save(ckpt.to_dict(), buffer)
    return buffer.getvalue()


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as error:
            raise CheckpointError(f"Cannot read the checkpoint file {path}: {error.strerror or error}.") from None
        if size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(_too_big(size))
        try:
            return path.read_bytes()
        except OSError as error:
            raise CheckpointError(f"Cannot read the checkpoint file {path}: {error.strerror or error}.") from None
    if hasattr(source, "getvalue"):  # st.file_uploader's UploadedFile, io.BytesIO
        return bytes(source.getvalue())
    if hasattr(source, "read"):
        data = source.read(MAX_CHECKPOINT_BYTES + 1)
        return bytes(data)
    raise CheckpointError(f"A checkpoint is given as bytes or a file path, not {type(source).__name__}.")


def _too_big(size: int) -> str:
    return (f"The file is {notation.megabytes(size)}; a cnnviz checkpoint is at most "
            f"{notation.megabytes(MAX_CHECKPOINT_BYTES)}.")


_NOT_A_CHECKPOINT = ("This is not a cnnviz checkpoint (download one from the 'Train a CNN' page; "
                     "its file name ends in .pt).")


def load_checkpoint(source) -> Checkpoint:
    """bytes, a path, or an uploaded file -> Checkpoint; CheckpointError for anything unusable.

    The file is opened with torch.load(weights_only=True), so a crafted pickle cannot run code,
    and its tensors are checked against the declared stack before any of their data is read.
    """
    try:
        return _load(source)
    except CheckpointError:
        raise
    except Exception as error:  # noqa: BLE001 - a crafted file can provoke any error; the page shows a message
        raise CheckpointError(f"The file cannot be used as a checkpoint ({_first_line(error)}).") from None


def _load(source) -> Checkpoint:
    data = _read_bytes(source)
    _check_archive(data)
    # First the outline: every tensor on the meta device, its shape, dtype, strides and storage
    # size as the file claims them, and no data read. Only what fits the stack is read for real.
    outline = _unpickle(data, "meta")
    _validate_fields(outline)
    _check_weights(outline["state_dict"], _expected_weights(outline["stack"], outline["in_shape"]))
    raw = _unpickle(data, "cpu")
    ckpt = Checkpoint(
        stack=raw["stack"],
        in_shape=tuple(int(n) for n in raw["in_shape"]),
        classes=list(raw["classes"]),
        dataset=raw["dataset"],
        state_dict=dict(raw["state_dict"]),
        metrics={k: float(v) for k, v in raw["metrics"].items()},
    )
    ckpt.validate()  # the same checks on the tensors as read (cheap), then their values
    return ckpt


def _check_archive(data: bytes) -> None:
    """Refuse what is not a torch.save archive of a sensible size, before torch reads it."""
    if len(data) == 0:
        raise CheckpointError("The file is empty.")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(_too_big(len(data)))
    if not zipfile.is_zipfile(io.BytesIO(data)):
        # torch.save writes a zip archive; anything else (a raw pickle, an image, text, a
        # file cut short so that the zip directory at its end is missing) is refused here.
        raise CheckpointError(_NOT_A_CHECKPOINT + " The file is not a torch.save archive, "
                              "or it was cut short (the download may not have finished).")
    # The entry count from the end of the archive, before zipfile builds an object for each
    # entry (a few MB of empty entries would cost hundreds of MB).
    with _damaged_archive():
        entries = zipfile._EndRecData(io.BytesIO(data))[zipfile._ECD_ENTRIES_TOTAL]
    if entries > MAX_ARCHIVE_ENTRIES:
        raise CheckpointError(f"The archive has {notation.count(entries)} entries; a cnnviz checkpoint "
                              f"has at most {notation.count(MAX_ARCHIVE_ENTRIES)}.")
    with _damaged_archive(), zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
    unpacked = sum(info.file_size for info in infos)
    if unpacked > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"The archive would unpack to {notation.megabytes(unpacked)}; a cnnviz checkpoint "
                              f"is at most {notation.megabytes(MAX_CHECKPOINT_BYTES)}.")
    pickle_bytes = max((info.file_size for info in infos if info.filename.endswith("data.pkl")), default=0)
    if pickle_bytes > MAX_PICKLE_BYTES:
        raise CheckpointError(f"The archive's description (data.pkl) is {notation.megabytes(pickle_bytes)}; "
                              f"a cnnviz checkpoint's is under {notation.megabytes(MAX_PICKLE_BYTES)}.")


@contextmanager
def _damaged_archive():
    """Errors of reading the zip structure -> CheckpointError."""
    try:
        yield
    except (zipfile.BadZipFile, OSError, EOFError, TypeError, IndexError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"The file is damaged: {error}.") from None


def _unpickle(data: bytes, device: str):
    """torch.load with weights_only=True onto `device` ("meta": shapes and dtypes only)."""
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            "The file was refused because it contains more than weights: loading it would create "
            f"Python objects or call functions ({_unpickling_reason(error)}). A cnnviz checkpoint holds only "
            "tensors, numbers and text; do not use files from sources you do not trust.") from None
    except Exception as error:  # noqa: BLE001 - truncated or damaged archive, bad records: torch raises many kinds
        raise CheckpointError(f"The file is damaged and cannot be read ({_first_line(error)}).") from None


def _unpickling_reason(error: Exception) -> str:
    """The line of torch's weights-only refusal that names what was refused (e.g. 'unsupported
    GLOBAL posix.system'), without its advice to load with weights_only=False."""
    for line in str(error).splitlines():
        line = line.strip()
        if line.startswith(("Trying to load", "Unsupported")) or "GLOBAL" in line:
            return _first_line(Exception(line.rstrip(".")))
    return "objects other than tensors"


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 300 else line[:297] + "..."


# ---------------------------------------------------------------------- checks


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate_fields(raw) -> None:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(_NOT_A_CHECKPOINT + " (It is a torch file, but not one this app wrote.)")
    version = raw.get("version")
    if not _is_int(version):
        raise CheckpointError(f"The checkpoint has no valid version number ({version!r}).")
    if version > VERSION:
        raise CheckpointError(f"The checkpoint has format version {version}, made by a newer cnnviz; "
                              f"this one reads version {VERSION}.")
    if version < 1:
        raise CheckpointError(f"The checkpoint has an unknown format version {version}.")
    missing = [key for key in ("stack", "in_shape", "classes", "dataset", "state_dict", "metrics") if key not in raw]
    if missing:
        raise CheckpointError(f"The checkpoint is missing {', '.join(missing)}.")

    stack = raw["stack"]
    if not isinstance(stack, str):
        raise CheckpointError("The checkpoint's stack is not text.")
    in_shape = raw["in_shape"]
    if not isinstance(in_shape, (list, tuple)) or len(in_shape) != 3 or not all(_is_int(n) for n in in_shape):
        raise CheckpointError(f"The checkpoint's input shape must be [channels, height, width], not {in_shape!r}.")
    try:
        infos = analyse(parse_stack(stack), tuple(in_shape))
    except StackError as error:
        raise CheckpointError(f"The checkpoint's stack cannot work: {error}") from None
    out_shape = infos[-1].out_shape

    classes = raw["classes"]
    if (not isinstance(classes, (list, tuple)) or not 1 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) and len(c) <= MAX_TEXT for c in classes)):
        raise CheckpointError("The checkpoint's class names must be a list of short texts.")
    if out_shape != (len(classes),):
        raise CheckpointError(f"The stack ends in {notation.shape(out_shape)} outputs, but the checkpoint names "
                              f"{notation.count(len(classes))} classes; the last layer must give one score per class.")
    dataset = raw["dataset"]
    if not isinstance(dataset, str) or len(dataset) > MAX_TEXT:
        raise CheckpointError("The checkpoint's data-set name must be a short text.")

    metrics = raw["metrics"]
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and (_is_int(v) or isinstance(v, float)) for k, v in metrics.items()):
        raise CheckpointError("The checkpoint's metrics must map names to numbers.")
    for name, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointError(f"The checkpoint's metric {name!r} is {value}, not a number that was measured.")
        if abs(value) > 1e300:  # ints that no float can hold, such as 10**400
            raise CheckpointError(f"The checkpoint's metric {name!r} is too large to be a measurement.")
    accuracy = metrics.get("test_accuracy")
    if accuracy is not None and not 0 <= accuracy <= 1:
        raise CheckpointError(f"The checkpoint's test accuracy is {notation.number(accuracy)}; "
                              "an accuracy is a share from 0 to 1.")

    state = raw["state_dict"]
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError("The checkpoint's weights must map layer names to tensors.")


def _expected_weights(stack: str, in_shape) -> dict[str, torch.Tensor]:
    """The state dict the stack's model has, on the meta device: names, shapes and dtypes, no memory."""
    try:
        with torch.device("meta"):
            return build_model(stack, tuple(in_shape)).state_dict()
    except StackError as error:
        raise CheckpointError(f"The checkpoint's stack cannot be built: {error}") from None


def _dims(shape) -> str:
    return notation.TIMES.join(str(n) for n in shape) if len(shape) else "a single number"


def _check_weights(state: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> None:
    """Every tensor exactly as the stack's model has it: the same names, shapes and dtypes, and
    stored densely in a storage of its own size. Reads only what a tensor says about itself,
    never its values, so a crafted shape or stride costs nothing."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise CheckpointError("The weights do not belong to the checkpoint's stack: " + "; ".join(parts) + ".")
    for name, want in expected.items():
        got = state[name]
        if got.layout != torch.strided:
            raise CheckpointError(f"The weights {name!r} are stored as a {got.layout} tensor; "
                                  "a cnnviz checkpoint stores plain (strided) tensors.")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"The weights {name!r} have shape {_dims(got.shape)}, but the stack needs "
                                  f"{_dims(want.shape)}.")
        if got.dtype != want.dtype:
            raise CheckpointError(f"The weights {name!r} are {got.dtype}, but the stack needs {want.dtype}.")
        needed = want.numel() * want.element_size()
        if not got.is_contiguous() or got.storage_offset() != 0 or got.untyped_storage().nbytes() != needed:
            raise CheckpointError(
                f"The weights {name!r} are not stored as {notation.count(want.numel())} numbers of their own "
                f"(strides {list(got.stride())}, storage of {notation.megabytes(got.untyped_storage().nbytes())}); "
                "the file was not written by this app.")


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"The weights {name!r} contain NaN or infinite values; the training diverged "
                                  f"(try a smaller learning rate).")


__all__ = [
    "FORMAT",
    "MAX_CHECKPOINT_BYTES",
    "MAX_CHECKPOINT_MB",
    "VERSION",
    "Checkpoint",
    "CheckpointError",
    "largest_checkpoint_bytes",
    "load_checkpoint",
    "save_checkpoint",
]
