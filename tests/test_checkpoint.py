"""Checkpoints: an exact round trip, and every kind of bad file refused with CheckpointError
(crafted pickles without running them, truncation, wrong format or version, weights that do
not fit the stack)."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

from cnnviz.checkpoint import (
    FORMAT,
    MAX_CHECKPOINT_BYTES,
    MAX_CHECKPOINT_MB,
    VERSION,
    Checkpoint,
    CheckpointError,
    largest_checkpoint_bytes,
    load_checkpoint,
    save_checkpoint,
)
from cnnviz.network import MAX_PARAMS, build_model

ROOT = Path(__file__).resolve().parent.parent

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
    with pytest.raises(CheckpointError, match="takes 12×12×1 images, not 12×12×3"):
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


def test_files_and_archives_beyond_the_limit_are_refused(monkeypatch):
    import cnnviz.checkpoint as module
    data = save_checkpoint(make_checkpoint())
    monkeypatch.setattr(module, "MAX_CHECKPOINT_BYTES", len(data) - 1)
    assert refused(data) == "The file is 7.7 kB; a cnnviz checkpoint is at most 7.7 kB."
    # A small file that unpacks to much more (10 MB of zeros, deflated): refused before unpacking.
    monkeypatch.setattr(module, "MAX_CHECKPOINT_BYTES", 1_000_000)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data/0", bytes(10_000_000))
    assert len(buffer.getvalue()) < 20_000
    assert refused(buffer.getvalue()) == ("The archive would unpack to 10.0 MB; a cnnviz checkpoint is at most "
                                          "1.0 MB.")


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
    assert "have shape 5×1×3×3, but the stack needs 4×1×3×3" in refused(saved(raw_dict(state_dict=other)))

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


# ------------------------------------------------------------------------ crafted tensors
# A file may describe its tensors however it likes: a 40000×40000 weight that is a view with
# stride 0 of one number takes a few bytes in the file. The loader reads what each tensor
# claims (shape, dtype, strides, storage size) and refuses what the stack does not need
# before any tensor's values are touched.


def with_weight(name: str, tensor: torch.Tensor) -> bytes:
    state = dict(make_checkpoint().state_dict)
    state[name] = tensor
    return saved(raw_dict(state_dict=state))


def stride_zero(*shape: int) -> torch.Tensor:
    """A tensor of `shape` that is one number seen everywhere (strides 0): no memory of its own."""
    return torch.zeros(1).expand(*shape)


LOAD_IN_A_FRESH_PROCESS = """
import resource, sys, time
from cnnviz.checkpoint import CheckpointError, load_checkpoint
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
try:
    load_checkpoint(data)
    outcome = "loaded"
except CheckpointError as error:
    outcome = "CheckpointError: " + str(error)
except BaseException as error:
    outcome = type(error).__name__ + ": " + str(error)
seconds = time.perf_counter() - start
grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(f"{seconds:.3f} {grown_mb:.0f}")
print(outcome)
"""


@pytest.mark.parametrize("side", [20_000, 40_000, 10_000_000])
def test_a_huge_weight_claimed_by_a_stride_zero_view_is_refused_at_once(tmp_path, side):
    data = with_weight("0.weight", stride_zero(side, side))
    assert len(data) < 10_000  # the claim costs the file nothing
    path = tmp_path / "crafted.pt"
    path.write_bytes(data)
    # A fresh process, so that its peak memory is this load's alone (ru_maxrss: kB on Linux).
    run = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    timing, outcome = run.stdout.strip().splitlines()
    seconds, grown_mb = (float(x) for x in timing.split())
    assert outcome == (f"CheckpointError: The weights '0.weight' have shape {side}×{side}, "
                       "but the stack needs 4×1×3×3.")
    assert seconds < 0.5 and grown_mb < 50, (seconds, grown_mb)


@pytest.mark.parametrize("tensor, expected", [
    # the right shape, but not numbers of its own
    (stride_zero(4, 1, 3, 3), "'0.weight' are not stored as 36 numbers of their own (strides [0, 0, 0, 0]"),
    (torch.zeros(9, 1, 3, 3)[::2].contiguous()[:4], "not stored as 36 numbers of their own"),  # a slice of 72
    (torch.zeros(3, 3, 1, 4).permute(3, 2, 0, 1), "not stored as 36 numbers of their own"),  # channels last
    # the right shape inside a big storage: 40 MB to read for 144 bytes of weights
    (torch.zeros(10_000_000)[:36].view(4, 1, 3, 3), "storage of 40.0 MB"),
    # the wrong number type
    (torch.zeros(4, 1, 3, 3, dtype=torch.float64), "'0.weight' are torch.float64, but the stack needs torch.float32"),
    (torch.zeros(4, 1, 3, 3, dtype=torch.float16), "are torch.float16, but the stack needs torch.float32"),
    (torch.zeros(4, 1, 3, 3, dtype=torch.int32), "are torch.int32, but the stack needs torch.float32"),
    (torch.zeros(4, 1, 3, 3, dtype=torch.complex64), "are torch.complex64, but the stack needs torch.float32"),
    (torch.zeros(4, 1, 3, 3, dtype=torch.bool), "are torch.bool, but the stack needs torch.float32"),
    # other shapes, claimed cheaply or not
    (torch.zeros(4, 1, 3), "have shape 4×1×3, but the stack needs 4×1×3×3"),
    (torch.tensor(1.0), "have shape a single number, but the stack needs 4×1×3×3"),
    (stride_zero(4, 1, 3, 3, 1_000_000), "have shape 4×1×3×3×1000000"),
])
def test_weights_that_are_not_dense_float32_of_the_stacks_shape_are_refused(tensor, expected):
    assert expected in refused(with_weight("0.weight", tensor))


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")
def test_a_sparse_weight_is_refused():
    assert "stored as a torch.sparse_coo tensor" in refused(with_weight("0.weight", torch.zeros(4, 1, 3, 3).to_sparse()))


def test_a_storage_bigger_than_its_record_is_refused():
    """The pickle says how many bytes a tensor's storage has; the record in the archive must hold them."""
    data = bytearray(with_weight("0.weight", torch.zeros(4, 1, 3, 3)))
    # the storage size 36 (numbers) as the pickle writes it, BININT1 36, right after the location 'cpu'
    at = data.index(b"X\x03\x00\x00\x00cpuq") + 10
    assert data[at:at + 2] == b"K\x24"
    data[at:at + 2] = b"K\xff"  # 255 numbers claimed, 36 stored
    assert "The weights '0.weight' have shape 4×1×3×3" not in refused(bytes(data))
    assert "not stored as 36 numbers of their own" in refused(bytes(data))


def test_archives_with_many_entries_or_a_huge_description_are_refused():
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        for i in range(5000):
            archive.writestr(f"archive/data/{i}", b"")
    assert refused(many.getvalue()) == "The archive has 5,000 entries; a cnnviz checkpoint has at most 1,000."
    big = io.BytesIO()
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"(" * 5_000_000)
    assert "The archive's description (data.pkl) is 5.0 MB" in refused(big.getvalue())


def test_anything_a_load_raises_becomes_a_checkpoint_error(monkeypatch):
    import cnnviz.checkpoint as module
    data = save_checkpoint(make_checkpoint())

    def out_of_memory(state):
        raise MemoryError("cannot allocate 1.6 GB")

    monkeypatch.setattr(module, "_check_finite", out_of_memory)
    assert refused(data) == "The file cannot be used as a checkpoint (cannot allocate 1.6 GB)."


# ------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("metrics, expected", [
    ({"test_accuracy": float("nan")}, "metric 'test_accuracy' is nan, not a number that was measured"),
    ({"test_loss": float("inf")}, "metric 'test_loss' is inf"),
    ({"test_accuracy": 7.5}, "test accuracy is 7.5; an accuracy is a share from 0 to 1"),
    ({"test_accuracy": -0.5}, "test accuracy is −0.5"),
    ({"epochs": 10 ** 400}, "metric 'epochs' is too large"),
])
def test_metrics_that_are_not_measured_numbers_are_refused(metrics, expected):
    assert expected in refused(saved(raw_dict(metrics=metrics)))


def test_a_metric_that_could_not_be_measured_is_left_out_and_accuracy_reads_as_the_lecture_writes_it():
    ckpt = Checkpoint.from_model(trained_like_model(), STACK, IN_SHAPE, CLASSES, "fashion-mnist",
                                 {"test_accuracy": 0.0003, "test_loss": float("nan")})
    assert ckpt.metrics == {"test_accuracy": 0.0003}
    assert load_checkpoint(save_checkpoint(ckpt)).metrics == {"test_accuracy": 0.0003}
    assert ckpt.summary() == f"{STACK} on fashion-mnist (12×12×1, 10 classes, test accuracy 0.03%)"


# ------------------------------------------------------------------------ size limits


def test_every_checkpoint_the_training_page_can_make_can_be_uploaded_again():
    # Streamlit refuses uploads over server.maxUploadSize (MiB) before the page sees them.
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == MAX_CHECKPOINT_MB
    assert MAX_CHECKPOINT_BYTES == MAX_CHECKPOINT_MB * 1024 * 1024
    assert MAX_PARAMS * 4 < largest_checkpoint_bytes() <= MAX_CHECKPOINT_BYTES

    # A stack the training page allows on 28×28×1: 6.4 M parameters, 25.7 MB, more than the 20 MB of old.
    stack = "conv3x16,relu,flatten,fc512,relu,fc10"
    model = build_model(stack, (1, 28, 28))
    data = save_checkpoint(Checkpoint.from_model(model, stack, (1, 28, 28), CLASSES, "fashion-mnist"))
    params = sum(p.numel() for p in model.parameters())
    assert params == 160 + 12_544 * 512 + 512 + 5_130 and 20 * 1024 * 1024 < len(data) < MAX_CHECKPOINT_BYTES
    assert load_checkpoint(data).stack == stack


def test_the_size_bound_covers_what_torch_save_writes():
    """largest_checkpoint_bytes() assumes 1 kB of archive per tensor and 8 bytes of counter per batch
    norm; a real file with many small tensors shows how much torch.save adds."""
    stack = ",".join(["conv3x8,bn,relu"] * 15 + ["gap", "fc10"])
    model = build_model(stack, (1, 8, 8))
    data = save_checkpoint(Checkpoint.from_model(model, stack, (1, 8, 8), CLASSES, "x"))
    tensors = model.state_dict()
    numbers = sum(t.numel() * t.element_size() for t in tensors.values())
    assert len(tensors) == 107  # conv: weight, bias; batch norm: weight, bias, running mean and variance, counter
    assert len(data) - numbers < len(tensors) * 1024 + 8 * 1024  # records and the pickle
