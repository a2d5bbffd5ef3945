"""Training a stack by stochastic gradient descent, fast, as the lecture's last slide says:
cross-entropy loss, automatic differentiation, gradient steps on small batches.

Built for speed on any device without per-sample Python work:

- the whole data set lives on the device as one uint8 tensor; each epoch draws a
  `torch.randperm`, and a batch is one index into it, scaled to [0, 1] on the device;
- augmentation (random horizontal flips, random shifts of a few pixels) is done on the whole
  batch on the device;
- on CUDA: bfloat16 autocast, channels_last, non-blocking copies, a fused optimizer,
  cuDNN autotuning;
- the host never waits for the device inside the loop: loss and accuracy are summed on the
  device (a `Meter`) and read (one synchronisation) only a few times per second, when progress
  is reported, and at evaluation points; a `Stopwatch` counts the training time, evaluations
  and pauses left out.

The loop, `Trainer._train_epochs`, reads top to bottom: shuffle, then for each batch
`train_step`, and at the meter's times a training point, at the evaluation times a test point.

`Trainer(config, train_set, test_set).run()` trains and returns a `TrainResult`; a
`Control` lets another thread pause and resume it between steps and stop it within one layer
(hooks on the model's modules and on its activations' gradients check the stop, so even a step
of seconds is cut short); `on_progress` and `on_epoch` callbacks receive `TrainProgress` and
`EpochReport`s (cnnviz.worker sends them to the run's record, cnnviz.runs).

The model's input is uint8 pixels / 255, as `cnnviz.checkpoint.Checkpoint.prepare` does.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Checkpoint
from .network import (
    DEFAULT_STACK,
    StackError,
    analyse,
    build_model,
    format_stack,
    head_problem,
    parse_stack,
    totals,
)
from .notation import megabytes, shape

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")
DEFAULT_LR = {"adam": 3e-3, "sgd": 0.05}  # the tiny default: 86-87 % after one Fashion-MNIST epoch

MAX_EPOCHS = 200
MAX_BATCH = 8192
# What the training page offers (a link may ask only for these).
LEARNING_RATES = (0.0001, 0.0003, 0.001, 0.002, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3)
BATCH_SIZES = (16, 32, 64, 128, 256, 512, 1024, 2048)
PAGE_MAX_EPOCHS = 50
MAX_PAGE_SHIFT = 4
MAX_SHIFT = 8
SAMPLE_ROW = 10  # test images shown with their predictions at each epoch
MEMORY_HEADROOM = 0.8  # use at most this fraction of the free memory


class TrainError(Exception):
    """Training cannot start or could not go on; the message says why and what to change."""


# ---------------------------------------------------------------------------- devices


def available_devices() -> list[str]:
    """Device types usable here, best first: 'cuda', 'mps', 'cpu'."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def pick_device(choice: str = "auto") -> torch.device:
    """'auto' -> cuda, else mps, else cpu; a named device must be available (TrainError if not)."""
    if choice not in DEVICE_CHOICES:
        raise TrainError(f"The device is one of {', '.join(DEVICE_CHOICES)}, not {choice!r}.")
    devices = available_devices()
    if choice == "auto":
        return torch.device(devices[0])
    if choice not in devices:
        raise TrainError(f"There is no {choice.upper()} device on this server; "
                         f"available: {', '.join(d.upper() for d in devices)}.")
    return torch.device(choice)


def device_label(device: torch.device | str) -> str:
    """'CUDA (NVIDIA H100 80GB HBM3)', 'CPU (2 threads)', 'MPS (Apple GPU)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    if device.type == "mps":
        return "MPS (Apple GPU)"
    threads = cpu_threads()
    return f"CPU ({threads} thread{'s' if threads != 1 else ''})"


def free_memory_bytes(device: torch.device) -> int | None:
    """Free memory on the device (CUDA: the driver's count; CPU: MemAvailable), or None."""
    try:
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            return int(free)
        if device.type == "cpu":
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
    except Exception:  # noqa: BLE001 - an estimate only; no number means no check
        return None
    return None


def cpu_threads(requested: int | None = None) -> int:
    """CPU threads for a training run: `requested` if given; else torch's count (all cores),
    or 1 when the machine is already busy (1-minute load average >= cores).

    On a busy machine a team of several threads spends its time waiting for the one that was
    descheduled: on 2 shared cores under a load of 7, one thread trained the default stack at
    4,000-8,000 images/s, two threads at 350-3,700.
    """
    if requested:
        return requested
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cores
    except OSError:
        busy = False
    return 1 if busy and cores > 1 else torch.get_num_threads()


# ---------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run. `problems()` lists what is out of range."""

    stack: str = DEFAULT_STACK
    epochs: int = 3
    batch_size: int = 64
    optimizer: str = "adam"  # "adam" or "sgd" (with momentum)
    lr: float = DEFAULT_LR["adam"]
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    schedule: str = "constant"  # or "cosine": the learning rate decays to 0 over the run
    flip: bool = False  # random horizontal flips
    shift: int = 0  # random shifts of up to this many pixels in each direction
    device: str = "auto"
    seed: int = 0
    evals_per_epoch: int = 1  # test-set evaluations per epoch (the last one at the epoch's end)
    eval_at_start: bool = True  # a test point before the first step (chance level)
    report_every_s: float = 0.25  # how often loss/accuracy are read from the device
    time_limit_s: float | None = None  # stop after this much training time
    threads: int | None = None  # CPU threads; None: all cores, or 1 when the machine is busy (cpu_threads)

    def problems(self) -> list[str]:
        found = []

        def check(ok: bool, text: str) -> None:
            if not ok:
                found.append(text)

        check(isinstance(self.epochs, int) and 1 <= self.epochs <= MAX_EPOCHS,
              f"The number of epochs must be from 1 to {MAX_EPOCHS}, not {self.epochs}.")
        check(isinstance(self.batch_size, int) and 1 <= self.batch_size <= MAX_BATCH,
              f"The batch size must be from 1 to {MAX_BATCH}, not {self.batch_size}.")
        check(self.optimizer in OPTIMIZERS, f"The optimizer is 'adam' or 'sgd', not {self.optimizer!r}.")
        check(isinstance(self.lr, (int, float)) and 0 < self.lr <= 10 and math.isfinite(self.lr),
              f"The learning rate must be above 0 and at most 10, not {self.lr}.")
        check(0 <= self.momentum < 1, f"The momentum must be from 0 to below 1, not {self.momentum}.")
        check(0 <= self.weight_decay <= 1, f"The weight decay must be from 0 to 1, not {self.weight_decay}.")
        check(self.schedule in SCHEDULES, f"The schedule is 'constant' or 'cosine', not {self.schedule!r}.")
        check(isinstance(self.shift, int) and 0 <= self.shift <= MAX_SHIFT,
              f"The shift must be from 0 to {MAX_SHIFT} pixels, not {self.shift}.")
        check(self.device in DEVICE_CHOICES, f"The device is one of {', '.join(DEVICE_CHOICES)}, not {self.device!r}.")
        check(isinstance(self.evals_per_epoch, int) and 1 <= self.evals_per_epoch <= 100,
              f"Evaluations per epoch must be from 1 to 100, not {self.evals_per_epoch}.")
        check(self.report_every_s > 0, "Progress must be reported at a positive interval.")
        check(self.time_limit_s is None or self.time_limit_s > 0, "The time limit must be positive.")
        check(self.threads is None or (isinstance(self.threads, int) and 1 <= self.threads <= 256),
              f"The number of CPU threads must be from 1 to 256, not {self.threads}.")
        return found


# ---------------------------------------------------------------------------- results


@dataclass
class History:
    """Curves: train points several times per epoch, test points at evaluations.

    `*_epoch` is fractional (1.5 = half-way through the second epoch); `test_seconds` is the
    training time (evaluations excluded) when each test point was taken.
    """

    train_epoch: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_epoch: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    test_seconds: list[float] = field(default_factory=list)

    def copy(self) -> History:
        return History(*(list(getattr(self, f)) for f in self.__dataclass_fields__))


@dataclass
class TrainProgress:
    """Where a run stands; cheap to copy, published a few times per second."""

    epoch: float  # fractional epochs done
    epochs: int
    step: int  # optimizer steps done
    steps: int  # steps in the whole run
    images_seen: int
    images_per_s: float  # recent training throughput (evaluations excluded)
    train_seconds: float  # training time so far, evaluations excluded
    elapsed_s: float  # wall time since the start
    eta_s: float | None  # estimated time left
    phase: str  # "training", "evaluating", "paused", "done"

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.steps) if self.steps else 0.0


@dataclass
class EpochReport:
    """What the page shows at each epoch's end (all tensors on the CPU)."""

    epoch: int  # 1-based; 0: before the first step (untrained, eval_at_start)
    test_loss: float
    test_accuracy: float
    confusion: torch.Tensor  # (K, K) int64, rows = true class, columns = predicted class
    sample_images: torch.Tensor  # uint8 (M, C, H, W), one test image per class
    sample_labels: torch.Tensor  # (M,)
    sample_predictions: torch.Tensor  # (M,)
    sample_probabilities: torch.Tensor  # (M,) softmax probability of the predicted class
    filters: torch.Tensor | None  # first conv layer's weights (F, C, k, k), float32, or None


@dataclass
class TrainResult:
    model: nn.Module  # on the CPU, eval mode
    history: History
    reports: list[EpochReport]
    test_accuracy: float | None
    test_loss: float | None
    epochs_done: float
    stopped: bool  # stopped early (by request or the time limit)
    train_seconds: float
    images_per_s: float  # mean training throughput over the run
    device: str
    checkpoint: Checkpoint


# ---------------------------------------------------------------------------- control


class StopTraining(Exception):
    """Raised inside a forward or backward pass when a stop was asked for: the step is abandoned."""


class Control:
    """Pause / resume / stop flags that the training loop reads between steps (thread-safe).

    The loop reads two plain attributes per step, so checking costs nothing measurable. A stop is
    also seen inside a step, layer by layer (Trainer's stop hooks).
    """

    def __init__(self) -> None:
        self.stop_requested = False
        self.pause_requested = False
        self._resumed = threading.Event()
        self._resumed.set()

    def pause(self) -> None:
        self._resumed.clear()
        self.pause_requested = True

    def resume(self) -> None:
        self.pause_requested = False
        self._resumed.set()

    def stop(self) -> None:
        self.stop_requested = True
        self._resumed.set()

    def wait_while_paused(self) -> None:
        """Called by the loop when pause_requested is seen; returns on resume or stop."""
        while self.pause_requested and not self.stop_requested:
            self._resumed.wait(0.5)


# ---------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class MemoryEstimate:
    data_bytes: int  # images and labels on the device
    model_bytes: int  # weights, gradients, optimizer state
    activation_bytes: int  # one training batch, forward and backward
    total_bytes: int

    def text(self) -> str:
        return (f"about {megabytes(self.total_bytes)}: data {megabytes(self.data_bytes)}, model with gradients "
                f"and optimizer state {megabytes(self.model_bytes)}, activations of one batch "
                f"{megabytes(self.activation_bytes)}")


def estimate_memory(config: TrainConfig, in_shape: Sequence[int], n_train: int, n_test: int) -> MemoryEstimate:
    """A generous estimate of what training needs on the device (StackError for bad stacks)."""
    infos = analyse(parse_stack(config.stack), in_shape)
    sums = totals(infos)
    per_image = math.prod(in_shape)
    data = (n_train + n_test) * (per_image + 8)
    optimizer_copies = 2 if config.optimizer == "adam" else 1
    model = sums.params * 4 * (2 + optimizer_copies)
    # forward activations are kept for the backward pass, which makes as many gradients again;
    # float32 on the CPU, about half in bf16 under autocast, counted as float32 to be safe.
    activations = 3 * sums.activations * 4 * config.batch_size
    return MemoryEstimate(data, model, activations, data + model + activations)


def check_memory(config: TrainConfig, in_shape, n_train: int, n_test: int, device: torch.device) -> MemoryEstimate:
    """TrainError, explained, when the run would not fit in the device's free memory."""
    estimate = estimate_memory(config, in_shape, n_train, n_test)
    free = free_memory_bytes(device)
    if free is not None and estimate.total_bytes > MEMORY_HEADROOM * free:
        where = "the GPU" if device.type in ("cuda", "mps") else "this server"
        raise TrainError(
            f"Training this stack needs {estimate.text()}, but {where} has only {megabytes(free)} free. "
            f"Use a smaller batch size, fewer filters or units, or pool earlier.")
    return estimate


# ---------------------------------------------------------------------------- helpers

_SEED_LOCK = threading.Lock()


def seeded_model(stack: str, in_shape: Sequence[int], seed: int) -> nn.Sequential:
    """build_model with reproducible initial weights, without disturbing the global RNG."""
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(stack, in_shape)


def _generator(device: torch.device, seed: int) -> torch.Generator:
    try:
        generator = torch.Generator(device=device)
    except RuntimeError:  # a backend without device generators
        generator = torch.Generator()
    return generator.manual_seed(seed)


def augment(x: torch.Tensor, flip: bool, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flips (p = 1/2) and shifts of up to `shift` pixels (zeros come in),
    drawn independently for every image of the batch, all on x's device."""
    n, _, h, w = x.shape
    gen_device = generator.device
    if flip:
        flips = torch.rand(n, generator=generator, device=gen_device).to(x.device) < 0.5
        x = torch.where(flips[:, None, None, None], x.flip(3), x)
    if shift:
        offsets = torch.randint(-shift, shift + 1, (2, n), generator=generator, device=gen_device).to(x.device)
        padded = F.pad(x, (shift, shift, shift, shift))
        rows = torch.arange(h, device=x.device)[None, :] + shift + offsets[0][:, None]  # (n, h)
        cols = torch.arange(w, device=x.device)[None, :] + shift + offsets[1][:, None]  # (n, w)
        batch = torch.arange(n, device=x.device)[:, None, None]
        # advanced indices around a slice: the result is (n, h, w, c)
        x = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return x


def class_examples(labels: torch.Tensor, classes: int, count: int = SAMPLE_ROW) -> torch.Tensor:
    """Indices of the first test image of each class (up to `count`), then more if fewer classes."""
    picked = []
    for k in range(classes):
        where = (labels == k).nonzero().flatten()
        if len(where):
            picked.append(int(where[0]))
        if len(picked) == count:
            break
    for i in range(len(labels)):
        if len(picked) >= min(count, len(labels)):
            break
        if i not in picked:
            picked.append(i)
    return torch.tensor(picked, dtype=torch.int64)


def _first_conv_weight(model: nn.Module) -> torch.Tensor | None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().cpu().clone()
    return None


def _is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("out of memory" in text or "mps backend out of memory" in text)


def out_of_memory_message(config: TrainConfig, device: torch.device) -> str:
    where = "GPU" if device.type in ("cuda", "mps") else "server"
    return (f"The {where} ran out of memory while training (batch size {config.batch_size}). "
            f"Nothing was lost except this run: try a smaller batch size or a smaller stack, "
            f"or wait until fewer people are training.")


# ---------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    """Wait until the device has done all the work queued on it (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class Stopwatch:
    """Training time: it runs while steps run and stands still during evaluations and pauses.

    Stopping it waits for the device, so that the steps the host has queued are counted when
    they are done, not when they were queued.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds = 0.0  # up to the last stop
        self._since: float | None = None  # while running: when it was started

    def start(self) -> None:
        self._since = time.perf_counter()

    def stop(self) -> None:
        if self._since is not None:
            synchronize(self.device)
            self.seconds += time.perf_counter() - self._since
            self._since = None

    def elapsed(self) -> float:
        """Training seconds as the host sees them now, without waiting for the device."""
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.seconds + running


class Meter:
    """The training loss and accuracy, summed on the device step after step so that the host
    never waits for a step, and read a few times per second of training (every `every_s`).

    A read follows a stop of the stopwatch, the one synchronisation: the two numbers then
    come over without waiting.
    """

    def __init__(self, device: torch.device, every_s: float):
        self.every_s = every_s
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self.images = 0  # since the last read
        self.read_at = 0.0  # training seconds at the last read

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """One step's mean loss and predictions; queued on the device, nothing is read."""
        self.loss_sum += loss.detach() * len(labels)
        self.correct += (logits.argmax(1) == labels).sum()
        self.images += len(labels)

    def due(self, train_seconds: float) -> bool:
        return train_seconds - self.read_at >= self.every_s

    def read(self, train_seconds: float) -> tuple[float, float, float]:
        """Mean loss, accuracy and images per second of training since the last read; then
        starts over."""
        images = max(self.images, 1)
        loss, accuracy = self.loss_sum.item() / images, self.correct.item() / images
        rate = self.images / max(train_seconds - self.read_at, 1e-9)
        self.loss_sum.zero_()
        self.correct.zero_()
        self.images, self.read_at = 0, train_seconds
        return loss, accuracy, rate


# ---------------------------------------------------------------------------- trainer


def _split(data, name: str):
    images, labels = getattr(data, "images", None), getattr(data, "labels", None)
    if images is None and isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise TrainError(f"The {name} images must be a uint8 tensor (N, C, H, W).")
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or len(labels) != len(images):
        raise TrainError(f"The {name} labels must be one int64 label per image.")
    if len(images) == 0:
        raise TrainError(f"The {name} set is empty.")
    return images, labels.long()


class Trainer:
    """One training run. Build it (everything is checked, nothing runs yet), then `run()`.

    train_set / test_set: objects with `.images` (uint8 N,C,H,W) and `.labels` (int64), e.g.
    cnnviz.data.ImageSet, or (images, labels) pairs. `classes` and `dataset` default to the
    train set's `.classes` and `.name`.
    """

    def __init__(self, config: TrainConfig, train_set, test_set, *, classes: Sequence[str] | None = None,
                 dataset: str | None = None, control: Control | None = None,
                 on_progress: Callable[[TrainProgress, History], None] | None = None,
                 on_epoch: Callable[[EpochReport], None] | None = None,
                 device: torch.device | str | None = None):
        problems = config.problems()
        if problems:
            raise TrainError(" ".join(problems))
        self.config = config
        self.train_x, self.train_y = _split(train_set, "training")
        self.test_x, self.test_y = _split(test_set, "test")
        self.in_shape = tuple(int(s) for s in self.train_x.shape[1:])
        if tuple(self.test_x.shape[1:]) != self.in_shape:
            raise TrainError(f"The test images are {shape(self.test_x.shape[1:])}, the training images "
                             f"{shape(self.in_shape)}.")
        self.classes = list(classes if classes is not None else getattr(train_set, "classes", []))
        if not self.classes:
            self.classes = [str(k) for k in range(int(self.train_y.max()) + 1)]
        self.dataset = dataset or getattr(train_set, "name", "custom")
        try:
            self.infos = analyse(parse_stack(config.stack), self.in_shape)
        except StackError as error:
            raise TrainError(str(error)) from None
        problem = head_problem(self.infos, len(self.classes))
        if problem:
            raise TrainError(problem)
        if bool((self.train_y < 0).any() or (self.train_y >= len(self.classes)).any()):
            raise TrainError("Some training labels are not class numbers.")
        self.device = torch.device(device) if device is not None else pick_device(config.device)
        self.control = control or Control()
        self.on_progress = on_progress
        self.on_epoch = on_epoch
        n = len(self.train_y)
        self.batch_size = min(config.batch_size, n)
        self.steps_per_epoch = math.ceil(n / self.batch_size)
        if n % self.batch_size == 1 and self.steps_per_epoch > 1:
            self.steps_per_epoch -= 1  # a batch of one image breaks batch norm; drop it
        self.total_steps = self.steps_per_epoch * config.epochs
        self.memory = estimate_memory(config, self.in_shape, n, len(self.test_y))
        self.sample_index = class_examples(self.test_y, len(self.classes))
        # channels_last: cuDNN's tensor-core kernels and oneDNN's CPU kernels are both faster
        # with it (1.5-2x for the tiny default stack on a CPU core).
        self.channels_last = self.device.type in ("cuda", "cpu")
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        cuda = self.device.type == "cuda"
        self.autocast = {"device_type": "cuda", "dtype": torch.bfloat16, "enabled": True} if cuda else None

    # -------------------------------------------------------------- the run

    def run(self) -> TrainResult:
        try:
            return self._run()
        except TrainError:
            raise
        except Exception as error:
            if not _is_out_of_memory(error):
                raise
        # Out of memory. Here, after the except block, the failed step's frames and the device
        # tensors they held are gone, so the memory really goes back for the next job.
        self._release_memory()
        raise TrainError(out_of_memory_message(self.config, self.device))

    def _release_memory(self) -> None:
        for name in ("train_x_dev", "train_y_dev", "test_x_dev", "test_y_dev", "model", "optimizer", "meter"):
            self.__dict__.pop(name, None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _run(self) -> TrainResult:
        cfg, device = self.config, self.device
        threads_before = torch.get_num_threads()
        if device.type == "cpu":
            self.threads = cpu_threads(cfg.threads)
            torch.set_num_threads(self.threads)
        else:
            torch.set_num_threads(threads_before)  # sets up this thread's OpenMP team as well
        try:
            return self._train()
        finally:
            torch.set_num_threads(threads_before)

    def _train(self) -> TrainResult:
        check_memory(self.config, self.in_shape, len(self.train_y), len(self.test_y), self.device)
        self._set_up()
        try:
            if self.config.eval_at_start:
                self._test_point(0.0, report_epoch=0)  # the untrained model: chance level
            stopped = self._train_epochs()
        except StopTraining:  # cut inside a step or an evaluation: that step never happened
            stopped = True
        self.cut_on_stop = False  # the evaluation of the model at the stop is not cut
        self._finish()
        result = self._result(stopped)
        self._release_memory()
        return result

    def _train_epochs(self) -> bool:
        """The training loop: steps, a training point whenever the meter is due, test points
        `evals_per_epoch` times per epoch. The host waits for the device only at those points
        and at a pause. True when stopped early (by request or by the time limit)."""
        cfg, control, clock, meter = self.config, self.control, self.clock, self.meter
        steps = self.steps_per_epoch
        test_after = {round(steps * (i + 1) / cfg.evals_per_epoch) for i in range(cfg.evals_per_epoch)}
        shuffle = torch.Generator().manual_seed(cfg.seed)
        self.model.train()
        clock.start()
        self._publish("training")
        for epoch in range(cfg.epochs):
            order = self._shuffled(shuffle)
            for b in range(steps):
                if (control.pause_requested or control.stop_requested) and not self._carry_on():
                    return True
                self.train_step(*self._batch(order, b))
                seconds = clock.elapsed()  # no waiting for the device
                at_test, over_time = b + 1 in test_after, self._over_time(seconds)
                if at_test or over_time or meter.due(seconds):
                    where = epoch + (b + 1) / steps
                    self._training_point(where)  # the host waits for the device here
                    over_time = self._over_time(clock.seconds)
                    if at_test or over_time:
                        last = b + 1 == steps or over_time
                        self._test_point(where, report_epoch=epoch + 1 if last else None)
                    clock.start()
                    self._publish("training")
                    if over_time:
                        return True
        return False

    def _finish(self) -> None:
        """After the last step: the last training window, and a test point if the last step had none."""
        self.clock.stop()
        self.model.train()  # a cut evaluation may have left it in eval mode
        if self.meter.images:  # stopped between two reads
            self._training_point(self.epochs_done)
        tested = self.history.test_epoch and self.history.test_epoch[-1] >= self.epochs_done - 1e-9
        if self.steps_done and not tested:  # stopped mid-epoch: the model's accuracy must be known
            self._test_point(self.epochs_done, report_epoch=math.ceil(self.epochs_done))

    def checkpoint(self) -> Checkpoint:
        """The model as it is now (weights copied to the CPU), with the last test point's metrics;
        the worker keeps one at every epoch's end (cnnviz.worker)."""
        test_loss, test_accuracy = self.last_test or (None, None)
        seconds = self.clock.seconds
        images_per_s = self.images_seen / seconds if seconds else 0.0
        metrics = {"epochs": self.epochs_done, "train_seconds": seconds, "images_per_s": images_per_s}
        if test_accuracy is not None:
            metrics.update(test_accuracy=test_accuracy, test_loss=test_loss)
        return Checkpoint.from_model(self.model, format_stack_text(self.config.stack), self.in_shape, self.classes,
                                     self.dataset, metrics)

    def _result(self, stopped: bool) -> TrainResult:
        """The trained model, on the CPU in eval mode, with its curves, reports and checkpoint."""
        self._remove_stop_hooks()
        model = self.model = self.model.eval().to("cpu", memory_format=torch.contiguous_format)
        test_loss, test_accuracy = self.last_test or (None, None)
        seconds = self.clock.seconds
        images_per_s = self.images_seen / seconds if seconds else 0.0
        checkpoint = self.checkpoint()
        self._publish("done")
        return TrainResult(
            model=model, history=self.history, reports=self.reports, test_accuracy=test_accuracy,
            test_loss=test_loss, epochs_done=self.epochs_done, stopped=stopped, train_seconds=seconds,
            images_per_s=images_per_s, device=self.device.type, checkpoint=checkpoint)

    # -------------------------------------------------------------- set-up

    def _set_up(self) -> None:
        """The model, its optimizer and the data on the device; the run's clock, meter and curves."""
        cfg, device = self.config, self.device
        self.started = time.perf_counter()
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model = seeded_model(cfg.stack, self.in_shape, cfg.seed).to(device)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        self._add_stop_hooks(self.model)
        self.train_x_dev, self.train_y_dev = self._to_device(self.train_x), self._to_device(self.train_y)
        self.test_x_dev, self.test_y_dev = self._to_device(self.test_x), self._to_device(self.test_y)
        self.optimizer = self._optimizer()
        self.augment_generator = _generator(device, cfg.seed + 1)
        self.clock = Stopwatch(device)
        self.meter = Meter(device, cfg.report_every_s)
        self.history, self.reports = History(), []
        self.steps_done = self.images_seen = 0
        self.recent_images_per_s = 0.0  # over the last training window
        self.eval_seconds: list[float] = []
        self.last_test: tuple[float, float] | None = None  # (loss, accuracy)

    def _to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        """A copy on the device (the tensor itself on the CPU); on CUDA from pinned memory."""
        pinned = tensor.pin_memory() if self.device.type == "cuda" else tensor
        return pinned.to(self.device, non_blocking=True)

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if cfg.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)
        return torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay, **fused)

    @property
    def epochs_done(self) -> float:
        return self.steps_done / self.steps_per_epoch

    def _add_stop_hooks(self, model: nn.Module) -> None:
        """A stop is seen between any two layers: before each module's forward, and in the backward
        pass at each module's output gradient. A step of a big stack on the CPU takes seconds; a
        stop that waited for it would keep the device from the next run that long.

        Each hook reads two attributes: against a layer's work it costs nothing measurable."""
        self.cut_on_stop = True

        def check(*_) -> None:
            if self.cut_on_stop and self.control.stop_requested:
                raise StopTraining

        def on_output(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.requires_grad:
                output.register_hook(check)  # runs when the backward pass reaches this layer

        layers = [m for m in model.modules() if m is not model]
        self._stop_hooks = [m.register_forward_pre_hook(check) for m in layers]
        self._stop_hooks += [m.register_forward_hook(on_output) for m in layers]

    def _remove_stop_hooks(self) -> None:
        for handle in getattr(self, "_stop_hooks", ()):
            handle.remove()
        self._stop_hooks = []

    # -------------------------------------------------------------- steps

    def _shuffled(self, generator: torch.Generator) -> torch.Tensor:
        """An epoch's order of the training images, on the device."""
        order = torch.randperm(len(self.train_y), generator=generator)
        if self.device.type == "cuda":
            return order.pin_memory().to(self.device, non_blocking=True)
        return order.to(self.device)

    def _batch(self, order: torch.Tensor, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch b of an epoch's order (the last one takes the images left): pixels in [0, 1],
        augmented when asked, and labels, made on the device."""
        cfg, size = self.config, self.batch_size
        index = order[b * size:(b + 1) * size] if b < self.steps_per_epoch - 1 else order[b * size:]
        x = self._pixels(self.train_x_dev[index])
        if cfg.flip or cfg.shift:
            x = augment(x, cfg.flip, cfg.shift, self.augment_generator)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        return x, self.train_y_dev[index]

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One gradient step on a batch. Its loss and accuracy go to the meter, on the device:
        nothing here makes the host wait."""
        if self.config.schedule != "constant":
            lr = self._learning_rate(self.steps_done)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        logits = self._scores(self.model, x)
        loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.meter.add(loss, logits, y)
        self.steps_done += 1
        self.images_seen += len(y)

    def _learning_rate(self, step: int) -> float:
        cfg, steps = self.config, self.total_steps
        if cfg.schedule == "cosine":  # from lr down to 0 at the last step
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
        return cfg.lr

    def _carry_on(self) -> bool:
        """Between two steps, when a pause or a stop was asked for: wait out a pause (the
        clock stands still); False when training must stop."""
        control = self.control
        if control.pause_requested and not control.stop_requested:
            self.clock.stop()
            self._publish("paused")
            control.wait_while_paused()
            if not control.stop_requested:
                self.clock.start()
        return not control.stop_requested

    def _over_time(self, train_seconds: float) -> bool:
        limit = self.config.time_limit_s
        return limit is not None and train_seconds >= limit

    # -------------------------------------------------------------- reports

    def _training_point(self, epoch: float) -> None:
        """Stops the clock (the host waits for the device) and adds the meter's reading to the
        training curves."""
        self.clock.stop()
        loss, accuracy, self.recent_images_per_s = self.meter.read(self.clock.seconds)
        self.history.train_epoch.append(epoch)
        self.history.train_loss.append(loss)
        self.history.train_accuracy.append(accuracy)

    def _test_point(self, epoch: float, report_epoch: int | None) -> None:
        """A test-set evaluation (not counted as training time) added to the test curves; at the
        end of epoch `report_epoch` (0: before training) also an EpochReport for `on_epoch`."""
        started = time.perf_counter()
        self._publish("evaluating")
        was_training = self.model.training
        loss, accuracy, confusion, probabilities = self.evaluate(self.model)
        self.model.train(was_training)
        self.last_test = (loss, accuracy)
        self.history.test_epoch.append(epoch)
        self.history.test_loss.append(loss)
        self.history.test_accuracy.append(accuracy)
        self.history.test_seconds.append(self.clock.seconds)
        if report_epoch is not None:
            sample = self.sample_index
            report = EpochReport(
                epoch=report_epoch, test_loss=loss, test_accuracy=accuracy, confusion=confusion,
                sample_images=self.test_x[sample].clone(), sample_labels=self.test_y[sample].clone(),
                sample_predictions=probabilities.argmax(1), sample_probabilities=probabilities.max(1).values,
                filters=_first_conv_weight(self.model))
            self.reports.append(report)
            if self.on_epoch is not None:
                self.on_epoch(report)
        self.eval_seconds.append(time.perf_counter() - started)

    def _publish(self, phase: str) -> None:
        if self.on_progress is not None:
            self.on_progress(self._progress(phase), self.history)

    def _progress(self, phase: str) -> TrainProgress:
        """Where the run stands; the time left counts the evaluations still to come."""
        cfg, step, steps = self.config, self.steps_done, self.total_steps
        seconds = self.clock.seconds
        eta = None
        if step and phase != "done":
            evals_left = (steps - step) / self.steps_per_epoch * cfg.evals_per_epoch
            eval_time = sum(self.eval_seconds) / len(self.eval_seconds) if self.eval_seconds else 0.0
            eta = (steps - step) * seconds / step + evals_left * eval_time
            if cfg.time_limit_s is not None:
                eta = min(eta, max(0.0, cfg.time_limit_s - seconds))
        done = step / steps if steps else 1.0
        return TrainProgress(
            epoch=done * cfg.epochs, epochs=cfg.epochs, step=step, steps=steps, images_seen=self.images_seen,
            images_per_s=self.recent_images_per_s, train_seconds=seconds, elapsed_s=time.perf_counter() - self.started,
            eta_s=eta, phase=phase)

    # -------------------------------------------------------------- evaluation

    @torch.inference_mode()
    def evaluate(self, model: nn.Module) -> tuple[float, float, torch.Tensor, torch.Tensor]:
        """Test loss and accuracy, the confusion matrix (CPU) and the softmax of the sample row
        (CPU); everything summed on the device, read once."""
        model.eval()
        k = len(self.classes)
        x_all, y_all = self.test_x_dev, self.test_y_dev
        n = len(y_all)
        per_image = max(1, totals(self.infos).activations * 4)
        batch = int(max(self.batch_size, min(4096, 256e6 // per_image)))
        loss_sum = torch.zeros((), device=self.device)
        confusion = torch.zeros(k * k, dtype=torch.int64, device=self.device)
        for i in range(0, n, batch):
            logits = self._forward(model, x_all[i:i + batch])
            y = y_all[i:i + batch]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
        sample = self.sample_index.to(self.device)
        probs = torch.softmax(self._forward(model, x_all[sample]), dim=1)
        confusion = confusion.view(k, k).cpu()
        loss = loss_sum.item() / n
        return loss, float(confusion.diagonal().sum()) / n, confusion, probs.cpu()

    def _forward(self, model: nn.Module, x_uint8: torch.Tensor) -> torch.Tensor:
        """float32 class scores of uint8 images."""
        return self._scores(model, self._pixels(x_uint8)).float()

    def _pixels(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images -> float32 in [0, 1] (as Checkpoint.prepare), in the trainer's memory format."""
        return x_uint8.to(torch.float32, memory_format=self.memory_format).mul_(1.0 / 255.0)

    def _scores(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The model's class scores, under bfloat16 autocast on CUDA."""
        if self.autocast is None:
            return model(x)
        with torch.autocast(**self.autocast):
            return model(x)


def format_stack_text(stack: str) -> str:
    """The canonical spelling of a stack (what the checkpoint stores)."""
    return format_stack(parse_stack(stack))


def train(config: TrainConfig, train_set, test_set, **kwargs) -> TrainResult:
    """Shortcut: Trainer(config, train_set, test_set, **kwargs).run()."""
    return Trainer(config, train_set, test_set, **kwargs).run()
