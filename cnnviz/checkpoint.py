"""Saving a trained model with its architecture, and loading one back safely.

A checkpoint is `torch.save` of one plain dict (contract 3 of the helper brief):

    {"format": "cnnviz-checkpoint", "version": 1,
     "stack": "conv3x8,relu,maxpool2,...",        # cnnviz.network text form
     "in_shape": [C, H, W],
     "classes": ["T-shirt/top", ...],            # one name per output of the last layer
     "dataset": "fashion-mnist",
     "state_dict": {name: tensor},               # of build_model(stack, in_shape)
     "metrics": {"test_accuracy": 0.87, ...}}    # plain numbers

Loading never runs code from the file: `torch.load(weights_only=True)` only rebuilds
tensors, dicts, lists, strings and numbers, and everything else (a pickle that would call
`os.system`, say) is refused. Every way a file can be wrong — not a checkpoint, cut short,
crafted, from a newer version, weights that do not fit the stack — raises `CheckpointError`
with a message meant for the person who uploaded it.

The model's input is the image as float32 in [0, 1] (uint8 pixels / 255), shape
(N, C, H, W); `Checkpoint.prepare` does that conversion.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .network import StackError, analyse, build_model, parse_stack, shape_text

FORMAT = "cnnviz-checkpoint"
VERSION = 1
# The network module allows at most 50 M parameters (200 MB as float32); a little room
# for buffers (batch-norm statistics) and the zip structure.
MAX_CHECKPOINT_BYTES = 256 * 1024 * 1024
MAX_CLASSES = 4096
MAX_TEXT = 200  # characters of a class or data-set name


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
        """Snapshot `model`'s weights (copied to the CPU, detached) with its description."""
        state = {name: t.detach().to("cpu", copy=True).contiguous() for name, t in model.state_dict().items()}
        ckpt = cls(stack, tuple(int(n) for n in in_shape), [str(c) for c in classes], str(dataset), state,
                   {str(k): float(v) for k, v in (metrics or {}).items()})
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
        _check_state_dict(model, self.state_dict)
        model.load_state_dict(self.state_dict, strict=True)
        return model.eval()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) or (C, H, W) -> the float input the model was trained on."""
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if tuple(images.shape[1:]) != tuple(self.in_shape):
            raise CheckpointError(f"The model takes {shape_text(self.in_shape)} images, "
                                  f"not {shape_text(images.shape[1:])}.")
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        return images.float()

    def summary(self) -> str:
        """One line for captions: stack, data set and accuracy."""
        acc = self.test_accuracy
        acc_text = f", test accuracy {acc:.1%}" if acc is not None else ""
        return f"{self.stack} on {self.dataset} ({shape_text(self.in_shape)}, {len(self.classes)} classes{acc_text})"

    def validate(self) -> None:
        """Raise CheckpointError unless every field is well-formed and the weights fit the stack."""
        _validate_fields(self.to_dict())
        self.build_model()


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
    return (f"The file is {size / 1e6:,.0f} MB; a cnnviz checkpoint is at most "
            f"{MAX_CHECKPOINT_BYTES / 1e6:,.0f} MB.")


_NOT_A_CHECKPOINT = ("This is not a cnnviz checkpoint (download one from the 'Train a CNN' page; "
                     "its file name ends in .pt).")


def load_checkpoint(source) -> Checkpoint:
    """bytes, a path, or an uploaded file -> Checkpoint; CheckpointError for anything unusable.

    The file is opened with torch.load(weights_only=True), so a crafted pickle cannot run code.
    """
    data = _read_bytes(source)
    if len(data) == 0:
        raise CheckpointError("The file is empty.")
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(_too_big(len(data)))
    if not zipfile.is_zipfile(io.BytesIO(data)):
        # torch.save writes a zip archive; anything else (a raw pickle, an image, text, a
        # file cut short so that the zip directory at its end is missing) is refused here.
        raise CheckpointError(_NOT_A_CHECKPOINT + " The file is not a torch.save archive, "
                              "or it was cut short (the download may not have finished).")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise CheckpointError(f"The file is damaged: {error}.") from None
    if unpacked > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"The archive would unpack to {unpacked / 1e6:,.0f} MB; a cnnviz checkpoint is "
                              f"at most {MAX_CHECKPOINT_BYTES / 1e6:,.0f} MB.")
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            "The file was refused because it contains more than weights: loading it would create "
            f"Python objects or call functions ({_unpickling_reason(error)}). A cnnviz checkpoint holds only "
            "tensors, numbers and text; do not use files from sources you do not trust.") from None
    except Exception as error:  # truncated or damaged archive, bad records: torch raises many kinds
        raise CheckpointError(f"The file is damaged and cannot be read ({_first_line(error)}).") from None
    _validate_fields(raw)
    ckpt = Checkpoint(
        stack=raw["stack"],
        in_shape=tuple(int(n) for n in raw["in_shape"]),
        classes=list(raw["classes"]),
        dataset=raw["dataset"],
        state_dict=dict(raw["state_dict"]),
        metrics={k: float(v) for k, v in raw["metrics"].items()},
    )
    ckpt.build_model()  # weights must fit the stack exactly
    return ckpt


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
        raise CheckpointError(f"The stack ends in {shape_text(out_shape)} outputs, but the checkpoint names "
                              f"{len(classes)} classes; the last layer must give one score per class.")
    dataset = raw["dataset"]
    if not isinstance(dataset, str) or len(dataset) > MAX_TEXT:
        raise CheckpointError("The checkpoint's data-set name must be a short text.")

    metrics = raw["metrics"]
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and (_is_int(v) or isinstance(v, float)) for k, v in metrics.items()):
        raise CheckpointError("The checkpoint's metrics must map names to numbers.")

    state = raw["state_dict"]
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError("The checkpoint's weights must map layer names to tensors.")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"The weights {name!r} contain NaN or infinite values; the training diverged "
                                  f"(try a smaller learning rate).")


def _check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise CheckpointError("The weights do not belong to the checkpoint's stack: " + "; ".join(parts) + ".")
    for name, tensor in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(tensor.shape):
            raise CheckpointError(f"The weights {name!r} have shape {list(got.shape)}, but the stack needs "
                                  f"{list(tensor.shape)}.")
        if got.dtype != tensor.dtype and not (got.is_floating_point() and tensor.is_floating_point()):
            raise CheckpointError(f"The weights {name!r} are {got.dtype}, but the stack needs {tensor.dtype}.")


__all__ = ["Checkpoint", "CheckpointError", "FORMAT", "VERSION", "load_checkpoint", "save_checkpoint"]
