"""Checkpoints: an exact round trip, and every kind of bad file refused with CheckpointError
(crafted pickles without running them, truncation, wrong format or version, weights that do
not fit the stack)."""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest
import torch

from cnnviz.checkpoint import FORMAT, VERSION, Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from cnnviz.network import build_model

STACK = "conv3x4,bn,relu,maxpool2,conv3x6,relu,maxpool2,flatten,fc10"
IN_SHAPE = (1, 12, 12)
CLASSES = [f"class {i}" for i in range(10)]


def trained_like_model(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(STACK, IN_SHAPE)
    # Move batch-norm statistics away from their defaults so that buffers are checked too.
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *IN_SHAPE) * 3 + 1)
    return model.eval()


def make_checkpoint(seed: int = 0) -> Checkpoint:
    return Checkpoint.from_model(trained_like_model(seed), STACK, IN_SHAPE, CLASSES, "fashion-mnist",
                                 {"test_accuracy": 0.8125, "epochs": 3})


def raw_dict(**changes):
    raw = make_checkpoint().to_dict()
    raw.update(changes)
    return raw


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def refused(data) -> str:
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(data)
    return str(caught.value)


# ------------------------------------------------------------------------ round trip


def test_round_trip_is_exact_and_gives_the_same_predictions(tmp_path):
    ckpt = make_checkpoint()
    data = save_checkpoint(ckpt)
    back = load_checkpoint(data)
    assert back.stack == STACK and back.in_shape == IN_SHAPE and back.classes == CLASSES
    assert back.dataset == "fashion-mnist" and back.metrics == {"test_accuracy": 0.8125, "epochs": 3.0}
    assert back.state_dict.keys() == ckpt.state_dict.keys()
    for name, tensor in ckpt.state_dict.items():
        assert back.state_dict[name].dtype == tensor.dtype
        assert torch.equal(back.state_dict[name], tensor), name
    # batch-norm running statistics and its counter travel too
    assert back.state_dict["1.num_batches_tracked"].item() == 1
    assert not torch.equal(back.state_dict["1.running_mean"], torch.zeros(4))

    original, rebuilt = trained_like_model(), back.build_model()
    assert not rebuilt.training
    x = torch.rand(5, *IN_SHAPE)
    assert torch.equal(original(x), rebuilt(x))

    # from a path and from a file-like object (Streamlit's UploadedFile has getvalue)
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    assert torch.equal(load_checkpoint(path).state_dict["0.weight"], ckpt.state_dict["0.weight"])
    assert load_checkpoint(str(path)).stack == STACK
    assert load_checkpoint(io.BytesIO(data)).classes == CLASSES
    # saving again gives a file that loads to the same tensors
    again = load_checkpoint(save_checkpoint(back))
    assert all(torch.equal(again.state_dict[k], v) for k, v in ckpt.state_dict.items())


def test_file_is_the_contract_dict_readable_by_plain_torch_load():
    raw = torch.load(io.BytesIO(save_checkpoint(make_checkpoint())), weights_only=True)
    assert set(raw) == {"format", "version", "stack", "in_shape", "classes", "dataset", "state_dict", "metrics"}
    assert raw["format"] == FORMAT == "cnnviz-checkpoint" and raw["version"] == VERSION == 1
    assert raw["in_shape"] == [1, 12, 12] and isinstance(raw["in_shape"], list)
    assert raw["classes"] == CLASSES


def test_from_model_copies_weights_off_the_model():
    model = trained_like_model()
    ckpt = Checkpoint.from_model(model, STACK, IN_SHAPE, CLASSES, "x")
    before = ckpt.state_dict["0.weight"].clone()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert torch.equal(ckpt.state_dict["0.weight"], before)


def test_prepare_scales_uint8_pixels_and_checks_the_shape():
    ckpt = make_checkpoint()
    images = torch.tensor([0, 51, 255], dtype=torch.uint8).repeat(48)[:144].reshape(1, 12, 12)
    x = ckpt.prepare(images)
    assert x.shape == (1, 1, 12, 12) and x.dtype == torch.float32
    assert x.flatten()[:3].tolist() == pytest.approx([0.0, 0.2, 1.0])
    with pytest.raises(CheckpointError, match="takes 1x12x12 images, not 3x12x12"):
        ckpt.prepare(torch.zeros(2, 3, 12, 12, dtype=torch.uint8))


# ------------------------------------------------------------------------ crafted files


class RunsShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_inside_a_torch_archive_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    data = saved(raw_dict(metrics={"test_accuracy": RunsShell(marker)}))
    message = refused(data)
    assert "contains more than weights" in message and "system" in message
    assert "weights_only` set to `False`" not in message  # no advice to switch the protection off
    assert not marker.exists()
    # the same payload at the top level
    assert "more than weights" in refused(saved(RunsShell(marker)))
    assert not marker.exists()
    # sanity check of the test itself: unpickling without protection would have run it
    pickle.loads(pickle.dumps(RunsShell(marker)))
    assert marker.exists()


def test_raw_pickle_and_other_files_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    assert "not a cnnviz checkpoint" in refused(pickle.dumps(RunsShell(marker)))
    assert not marker.exists()
    assert "not a cnnviz checkpoint" in refused(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert "not a cnnviz checkpoint" in refused("hello".encode())
    assert "empty" in refused(b"")
    # a zip that is not a torch archive
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    assert "damaged" in refused(buffer.getvalue())
    # a torch file holding something else
    assert "not one this app wrote" in refused(saved({"weights": torch.zeros(3)}))
    assert "not one this app wrote" in refused(saved(torch.zeros(3)))
    assert "Cannot read the checkpoint file" in refused(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="bytes or a file path"):
        load_checkpoint(12345)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file_is_refused(keep):
    data = save_checkpoint(make_checkpoint())
    message = refused(data[: int(len(data) * keep)])
    assert "cut short" in message or "damaged" in message


def test_damaged_bytes_inside_the_archive_are_refused():
    data = bytearray(save_checkpoint(make_checkpoint()))
    start = data.index(b"data.pkl")  # corrupt the pickle stream's local header and beginning
    data[start + 40:start + 80] = bytes(40)
    with pytest.raises(CheckpointError):
        load_checkpoint(bytes(data))


def test_archive_that_unpacks_beyond_the_limit_is_refused(monkeypatch):
    import cnnviz.checkpoint as module
    data = save_checkpoint(make_checkpoint())
    monkeypatch.setattr(module, "MAX_CHECKPOINT_BYTES", len(data) - 1)
    assert "MB" in refused(data)


# ------------------------------------------------------------------------ wrong contents


@pytest.mark.parametrize("changes, expected", [
    ({"format": "something-else"}, "not one this app wrote"),
    ({"version": 2}, "version 2, made by a newer cnnviz"),
    ({"version": 0}, "unknown format version 0"),
    ({"version": "1"}, "no valid version"),
    ({"stack": "conv3x4,relu,flatten,fc10,conv3x2"}, "stack cannot work"),
    ({"stack": 42}, "stack is not text"),
    ({"in_shape": [1, 12]}, "input shape"),
    ({"classes": CLASSES[:5]}, "names 5 classes"),
    ({"classes": [1, 2]}, "class names"),
    ({"dataset": None}, "data-set name"),
    ({"metrics": {"test_accuracy": "high"}}, "metrics"),
    ({"state_dict": [1, 2]}, "layer names to tensors"),
])
def test_wrong_fields_are_refused_with_a_message(changes, expected):
    assert expected in refused(saved(raw_dict(**changes)))


def test_missing_fields_are_named():
    raw = raw_dict()
    del raw["classes"], raw["metrics"]
    assert "missing classes, metrics" in refused(saved(raw))


def test_state_dict_that_does_not_match_the_stack_is_refused():
    other = build_model("conv3x5,bn,relu,maxpool2,conv3x6,relu,maxpool2,flatten,fc10", IN_SHAPE).state_dict()
    assert "have shape [5, 1, 3, 3], but the stack needs [4, 1, 3, 3]" in refused(saved(raw_dict(state_dict=other)))

    state = make_checkpoint().state_dict
    fewer = {k: v for k, v in state.items() if k != "8.bias"}
    assert "missing 8.bias" in refused(saved(raw_dict(state_dict=fewer)))
    more = dict(state, **{"9.weight": torch.zeros(2)})
    assert "unexpected 9.weight" in refused(saved(raw_dict(state_dict=more)))
    wrong_type = dict(state, **{"1.num_batches_tracked": torch.tensor(1.5)})
    assert "are torch.float32, but the stack needs torch.int64" in refused(saved(raw_dict(state_dict=wrong_type)))
    broken = dict(state, **{"0.bias": torch.tensor([0.0, float("nan"), 0.0, 0.0])})
    assert "NaN" in refused(saved(raw_dict(state_dict=broken)))


def test_saving_an_inconsistent_checkpoint_is_refused():
    ckpt = make_checkpoint()
    ckpt.classes = CLASSES[:3]
    with pytest.raises(CheckpointError, match="names 3 classes"):
        save_checkpoint(ckpt)
