"""The training engine: real (short) training on the bundled Fashion-MNIST subset, its
evaluation against a plain torch computation, augmentation checked pixel by pixel, pause /
resume giving bit-identical weights, stop, the time limit, memory and out-of-memory messages,
and CUDA when the machine has one."""

from __future__ import annotations

import threading
import time

import pytest
import torch
import torch.nn.functional as F

from cnnviz import train as train_module
from cnnviz.checkpoint import load_checkpoint, save_checkpoint
from cnnviz.data import load_images
from cnnviz.train import (
    DEFAULT_STACK,
    Control,
    Meter,
    Stopwatch,
    TrainConfig,
    Trainer,
    TrainError,
    augment,
    available_devices,
    class_examples,
    estimate_memory,
    pick_device,
    train,
)

SMALL_STACK = "conv3x4,relu,maxpool2,flatten,fc10"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fashion():
    return load_images("fashion-mnist", "train", source="bundled"), load_images("fashion-mnist", "test", source="bundled")


@pytest.fixture(scope="module")
def small(fashion):
    """1,000 training and 300 test images of the bundled subset."""
    tr, te = fashion
    return (tr.images[:1000], tr.labels[:1000]), (te.images[:300], te.labels[:300])


def cpu_config(**changes) -> TrainConfig:
    base = {"device": "cpu", "epochs": 1, "batch_size": 64, "report_every_s": 0.01}
    base.update(changes)
    return TrainConfig(**base)


# ---------------------------------------------------------------------------- devices / settings


def test_pick_device_prefers_cuda_then_mps_then_cpu():
    devices = available_devices()
    assert devices[-1] == "cpu"
    assert devices == [d for d in ("cuda", "mps", "cpu") if d in devices]
    assert pick_device("auto").type == devices[0]
    assert pick_device("cpu").type == "cpu"
    assert ("cuda" in devices) == torch.cuda.is_available()
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="no CUDA device"):
            pick_device("cuda")
    with pytest.raises(TrainError, match="one of auto, cuda, mps, cpu"):
        pick_device("tpu")


def test_config_problems_are_listed():
    assert TrainConfig().problems() == []
    problems = TrainConfig(epochs=0, batch_size=10**6, optimizer="rmsprop", lr=-1, shift=20).problems()
    text = " ".join(problems)
    for expected in ("epochs must be from 1", "batch size must be from 1", "'adam' or 'sgd'",
                     "learning rate must be above 0", "shift must be from 0 to 8"):
        assert expected in text
    with pytest.raises(TrainError, match="epochs must be"):
        Trainer(TrainConfig(epochs=0), (torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4)),
                (torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.zeros(4)))


def test_bad_stacks_and_data_are_explained_before_training(small):
    tr, te = small
    # 28 -> conv stride 8: 4 -> 2 -> 1 -> a 2x2 window no longer fits
    with pytest.raises(TrainError, match="Layer 5 maxpool 2×2: its input is 1×1, smaller than the 2×2 window"):
        Trainer(cpu_config(stack="conv3x4/s8,relu,maxpool2,maxpool2,maxpool2,flatten,fc10"), tr, te)
    with pytest.raises(TrainError, match="ends in 5 outputs, but the data has 10 classes: end the stack with fc10"):
        Trainer(cpu_config(stack="conv3x4,relu,flatten,fc5"), tr, te)
    with pytest.raises(TrainError, match="uint8 tensor"):
        Trainer(cpu_config(), (tr[0].float(), tr[1]), te)
    with pytest.raises(TrainError, match="test images are 20×20×1, the training images 28×28×1"):
        Trainer(cpu_config(), tr, (te[0][:, :, :20, :20], te[1]))


def test_memory_estimate_and_a_run_too_big_for_memory_is_explained(small, monkeypatch):
    tr, te = small
    estimate = estimate_memory(cpu_config(batch_size=100), (1, 28, 28), 1000, 300)
    assert estimate.data_bytes == 1300 * (784 + 8)
    # the default stack: 8·(9+1) + 16·(72+1) + 10·(784+1) parameters, Adam keeps 2 moments
    params = 8 * 10 + 16 * 73 + 10 * 785
    assert estimate.model_bytes == params * 4 * 4
    # activations of one image: input + every layer's output (see network.totals), x3, x batch
    activations = 784 + 8 * 784 * 2 + 8 * 196 + 16 * 196 * 2 + 16 * 49 + 784 + 10
    assert estimate.activation_bytes == 3 * activations * 4 * 100
    monkeypatch.setattr(train_module, "free_memory_bytes", lambda device: 10_000_000)
    with pytest.raises(TrainError, match=r"needs about .* MB.*only 10\.0 MB free\. Use a smaller batch size"):
        train(cpu_config(batch_size=2048), tr, te)


# ---------------------------------------------------------------------------- augmentation


def test_flip_and_shift_move_whole_images_within_the_range():
    torch.manual_seed(1)
    x = torch.rand(64, 2, 9, 7)
    gen = torch.Generator().manual_seed(3)
    flipped = augment(x, flip=True, shift=0, generator=gen)
    same = [torch.equal(flipped[i], x[i]) for i in range(64)]
    mirrored = [torch.equal(flipped[i], x[i].flip(-1)) for i in range(64)]
    assert all(a or b for a, b in zip(same, mirrored))
    assert 16 < sum(mirrored) < 48  # about half

    shifted = augment(x, flip=False, shift=2, generator=gen)
    padded = F.pad(x, (2, 2, 2, 2))
    seen = set()
    for i in range(64):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if torch.equal(shifted[i], padded[i, :, 2 + dy:2 + dy + 9, 2 + dx:2 + dx + 7])]
        assert matches, i
        seen.add(matches[0])
    assert len(seen) >= 10  # shifts differ from image to image
    assert shifted.shape == x.shape


def test_class_examples_picks_the_first_image_of_each_class():
    labels = torch.tensor([3, 1, 3, 0, 2, 1, 0])
    assert class_examples(labels, 4, count=4).tolist() == [3, 1, 4, 0]
    assert class_examples(labels, 4, count=3).tolist() == [3, 1, 4]
    assert class_examples(labels, 4).tolist() == [3, 1, 4, 0, 2, 5, 6]  # fewer classes than places: more images
    assert class_examples(labels, 2, count=5).tolist() == [3, 1, 0, 2, 4]


def test_meter_gives_the_mean_loss_accuracy_and_rate_of_each_window():
    torch.manual_seed(0)
    meter = Meter(torch.device("cpu"), every_s=0.25)
    batches = [(torch.randn(n, 10), torch.randint(0, 10, (n,))) for n in (64, 64, 17)]
    for logits, labels in batches:
        meter.add(F.cross_entropy(logits, labels), logits, labels)
    assert not meter.due(0.24) and meter.due(0.25)
    loss, accuracy, rate = meter.read(train_seconds=2.0)
    logits, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    assert loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)  # per image, not per batch
    assert accuracy == int((logits.argmax(1) == labels).sum()) / 145
    assert rate == 145 / 2.0
    # the next window starts from zero, at the time of the read
    meter.add(F.cross_entropy(logits[:10], labels[:10]), logits[:10], labels[:10])
    assert not meter.due(2.2) and meter.due(2.25)
    loss, accuracy, rate = meter.read(train_seconds=3.0)
    assert loss == pytest.approx(F.cross_entropy(logits[:10], labels[:10]).item(), rel=1e-6)
    assert accuracy == int((logits[:10].argmax(1) == labels[:10]).sum()) / 10 and rate == 10.0


def test_stopwatch_leaves_out_the_time_it_is_stopped():
    clock = Stopwatch(torch.device("cpu"))
    t0 = time.perf_counter()
    clock.start()
    time.sleep(0.05)
    clock.stop()
    t1 = time.perf_counter()
    first = clock.seconds
    assert 0.05 <= first <= t1 - t0
    time.sleep(0.1)  # an evaluation or a pause
    assert clock.elapsed() == clock.seconds == first
    t2 = time.perf_counter()
    clock.start()
    time.sleep(0.05)
    assert first + 0.05 <= clock.elapsed() and clock.seconds == first  # running: seen, not yet added
    clock.stop()
    t3 = time.perf_counter()
    assert first + 0.05 <= clock.seconds <= (t1 - t0) + (t3 - t2)


# ---------------------------------------------------------------------------- training


def test_short_training_on_the_bundled_data_learns(fashion):
    tr, te = fashion
    tr = type(tr)(tr.name, tr.split, tr.images[:3000], tr.labels[:3000], tr.classes, tr.source)
    progress_calls, epoch_reports = [], []
    result = train(cpu_config(stack=DEFAULT_STACK, epochs=1, batch_size=32, seed=0), tr, te,
                   on_progress=lambda p, h: progress_calls.append(p), on_epoch=epoch_reports.append)
    # chance is 10%; one epoch over 3,000 images reaches far above it
    assert result.test_accuracy > 0.6, result.test_accuracy
    assert result.history.test_accuracy[0] < 0.3  # the evaluation before the first step
    assert result.history.test_epoch == [0.0, 1.0]
    assert result.history.train_loss[-1] < result.history.train_loss[0]
    assert not result.stopped and result.epochs_done == 1.0
    steps = [p.step for p in progress_calls]
    assert steps == sorted(steps) and progress_calls[-1].phase == "done" and steps[-1] == 94  # ceil(3000 / 32)
    assert progress_calls[-1].images_seen == 3000
    assert result.images_per_s > 0
    start, report = epoch_reports  # before the first step, and after the epoch
    assert start.epoch == 0 and start.test_accuracy == result.history.test_accuracy[0]
    assert not torch.equal(start.filters, report.filters)  # the filters changed with training
    assert report.confusion.sum() == 1000 and report.confusion.diagonal().sum() / 1000 == result.test_accuracy
    assert report.sample_labels.tolist() == list(range(10))  # one test image per class, in class order
    assert report.filters.shape == (8, 1, 3, 3)
    assert torch.equal(report.filters, result.model[0].weight.detach())

    # The engine's evaluation against a plain torch computation on the returned CPU model.
    with torch.no_grad():
        logits = result.model(te.images.float() / 255)
    assert result.test_loss == pytest.approx(F.cross_entropy(logits, te.labels).item(), rel=1e-4)
    predictions = logits.argmax(1)
    assert result.test_accuracy == pytest.approx((predictions == te.labels).float().mean().item())
    expected = torch.zeros(10, 10, dtype=torch.int64)
    for t, p in zip(te.labels.tolist(), predictions.tolist()):
        expected[t, p] += 1
    assert torch.equal(report.confusion, expected)
    probs = torch.softmax(logits[class_examples(te.labels, 10)], 1)
    assert torch.allclose(report.sample_probabilities, probs.max(1).values, atol=1e-5)

    # The checkpoint it made loads back to the same predictions.
    back = load_checkpoint(save_checkpoint(result.checkpoint))
    assert back.stack == DEFAULT_STACK and back.dataset == "fashion-mnist" and back.classes == tr.classes
    assert back.test_accuracy == result.test_accuracy
    with torch.no_grad():
        assert torch.equal(back.build_model()(back.prepare(te.images)), logits)


def test_same_seed_same_run_and_sgd_with_augmentation_runs(small):
    tr, te = small
    config = cpu_config(stack=SMALL_STACK, epochs=2, evals_per_epoch=2, eval_at_start=False)
    a, b = train(config, tr, te), train(config, tr, te)
    assert a.history.test_accuracy == b.history.test_accuracy and len(a.history.test_accuracy) == 4
    assert a.history.test_epoch == [0.5, 1.0, 1.5, 2.0]
    assert all(torch.equal(a.checkpoint.state_dict[k], v) for k, v in b.checkpoint.state_dict.items())
    c = train(cpu_config(stack=SMALL_STACK, epochs=2, optimizer="sgd", lr=0.05, flip=True, shift=2,
                         schedule="cosine", seed=5), tr, te)
    assert c.test_accuracy > 0.3 and [r.epoch for r in c.reports] == [0, 1, 2]


def test_pause_and_resume_give_exactly_the_uninterrupted_weights(small):
    tr, te = small
    config = cpu_config(stack=SMALL_STACK, epochs=2, batch_size=50)
    reference = train(config, tr, te)

    control = Control()
    paused_at = []

    def on_progress(progress, history):
        if progress.step >= 7 and not paused_at:
            paused_at.append(progress.step)
            control.pause()
            threading.Timer(0.3, control.resume).start()

    result = Trainer(config, tr, te, control=control, on_progress=on_progress).run()
    assert paused_at and not result.stopped
    assert all(torch.equal(result.checkpoint.state_dict[k], v) for k, v in reference.checkpoint.state_dict.items())
    assert result.history.test_accuracy == reference.history.test_accuracy


def test_stop_keeps_the_model_and_evaluates_it(small):
    tr, te = small
    control = Control()

    def on_progress(progress, history):
        if progress.step >= 5:
            control.stop()

    result = Trainer(cpu_config(stack=SMALL_STACK, epochs=3, batch_size=50), tr, te, control=control,
                     on_progress=on_progress).run()
    assert result.stopped and 5 / 20 <= result.epochs_done < 1
    assert result.history.test_epoch[-1] == result.epochs_done  # a final evaluation at the stop
    assert result.checkpoint.metrics["epochs"] == result.epochs_done
    assert [r.epoch for r in result.reports] == [0, 1]


def test_time_limit_stops_training(small):
    tr, te = small
    result = train(cpu_config(stack=SMALL_STACK, epochs=50, time_limit_s=0.3), tr, te)
    assert result.stopped and result.epochs_done < 50
    assert 0.3 <= result.train_seconds < 5


def test_out_of_memory_becomes_a_message_and_frees_the_device(small):
    tr, te = small
    trainer = Trainer(cpu_config(stack=SMALL_STACK), tr, te)
    steps = []

    def no_memory_at_the_second_step(x, y):
        # the failure is this trainer's alone: other threads keep torch's own functions
        steps.append(len(y))
        if len(steps) == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trainer.train_step = no_memory_at_the_second_step
    with pytest.raises(TrainError, match="ran out of memory while training \\(batch size 64\\).*smaller batch size"):
        trainer.run()
    assert steps == [64, 64]
    for name in ("model", "optimizer", "train_x_dev", "test_x_dev"):
        assert not hasattr(trainer, name), name  # the device memory goes back for the next job


def test_engine_trains_on_the_best_device_present(small):
    """On CUDA when there is a GPU (bf16 autocast, channels_last), else on the CPU (float32): never skipped."""
    tr, te = small
    cuda = torch.cuda.is_available()
    trainer = Trainer(TrainConfig(stack=DEFAULT_STACK, epochs=2, device="auto"), tr, te)
    assert trainer.device.type == ("cuda" if cuda else pick_device("auto").type)
    assert trainer.channels_last
    if cuda:
        assert trainer.autocast["dtype"] == torch.bfloat16
    elif trainer.device.type == "cpu":
        assert trainer.autocast is None
    result = trainer.run()
    assert result.device == trainer.device.type and result.test_accuracy > 0.4
    assert next(result.model.parameters()).device.type == "cpu"  # handed back ready to save and show


def test_cpu_threads_drop_to_one_on_a_busy_machine(monkeypatch):
    monkeypatch.setattr(train_module.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(train_module.os, "getloadavg", lambda: (4.5, 1.0, 1.0))
    assert train_module.cpu_threads() == 1
    assert train_module.cpu_threads(3) == 3
    monkeypatch.setattr(train_module.os, "getloadavg", lambda: (0.5, 1.0, 1.0))
    assert train_module.cpu_threads() == 4
    assert "threads must be from 1 to 256" in " ".join(TrainConfig(threads=0.5).problems())


def test_training_restores_the_thread_count(small):
    tr, te = small
    before = torch.get_num_threads()
    result = train(cpu_config(stack=SMALL_STACK, threads=2), tr, te)
    assert torch.get_num_threads() == before and result.test_accuracy is not None
