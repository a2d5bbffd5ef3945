"""Image data sets as whole tensors: Fashion-MNIST, MNIST and CIFAR-10.

`load_images(name, split)` returns an `ImageSet`: every image of one split as a single
uint8 tensor (N, C, H, W) plus an int64 label tensor, so nothing downstream loops over
samples in Python.

Where the images come from (`source`):

- "bundled": a class-balanced subset of Fashion-MNIST shipped in assets/fashion-mnist
  (6,000 training and 1,000 test images, MIT licence, made by scripts/make_fashion_subset.py).
  Works everywhere, offline, in a second. Only Fashion-MNIST has one.
- "full": the whole data set. Fashion-MNIST is read from Debian's `dataset-fashion-mnist`
  package when installed (/usr/share/datasets/fashion-mnist); otherwise, and for MNIST and
  CIFAR-10, torchvision's own dataset classes read their usual files under the data folder
  `root` (default: $CNNVIZ_DATA, else data/ in the repository). With `download=True` missing
  files are fetched from the addresses torchvision lists (`download_full`), checked against
  torchvision's MD5 sums, with `progress(fraction, text)` called as bytes arrive.
- "auto": "full" when its files are already there, else the bundled subset (Fashion-MNIST),
  else a download when `download=True`.

Every failure a user can cause or fix (offline, missing files, a corrupt file) raises
`DataUnavailable`, whose message says what happened and what to do, including the
addresses to fetch and the folder layout to put the files in. Messages name files by their
full path, which is what someone running the app on their own machine needs; with
`root_name` (e.g. "the server's data folder") they name them inside that folder instead, so
the visitors of a shared server never learn its file system (the admin knows where
CNNVIZ_DATA points).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import struct
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from .notation import shape

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_FASHION_DIR = ROOT / "assets" / "fashion-mnist"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

NAMES = ("fashion-mnist", "mnist", "cifar10")
SPLITS = ("train", "test")
SOURCES = ("auto", "bundled", "full")

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(digit) for digit in range(10)]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck"]

# The original Fashion-MNIST / MNIST file names (Debian and the bundled subset keep the .gz).
FASHION_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

Progress = Optional[Callable[[float, str], None]]

DOWNLOAD_TIMEOUT_S = 30
CHUNK_BYTES = 1 << 16


class DataUnavailable(Exception):
    """The data set cannot be loaded; the message says why and what to do."""


@dataclass
class ImageSet:
    """A whole split as tensors."""

    name: str  # "fashion-mnist", "mnist", "cifar10"
    split: str  # "train" / "test"
    images: torch.Tensor  # uint8, (N, C, H, W)
    labels: torch.Tensor  # int64, (N,)
    classes: list[str]
    source: str  # "bundled subset", "Debian dataset-fashion-mnist", "torchvision's files in <folder>"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def shape_text(self) -> str:
        """One image's size as the lecture writes it (cnnviz.notation): 32×32×3."""
        return shape(self.shape)

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=len(self.classes))

    def image(self, index: int) -> torch.Tensor:
        """Image `index`, uint8 (C, H, W)."""
        return self.images[index]

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def class_name(self, index: int) -> str:
        """The class of image `index`, in words."""
        return self.classes[self.label(index)]

    def next_of_class(self, cls: int, after: int) -> int:
        """The first image of class `cls` after image `after`, wrapping round to the first one."""
        members = (self.labels == cls).nonzero().flatten()
        if len(members) == 0:
            raise ValueError(f"There is no image of class {self.classes[cls]!r}.")
        later = members[members > after]
        return int((later if len(later) else members)[0])

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        return ImageSet(self.name, self.split, self.images[indices], self.labels[indices], list(self.classes),
                        self.source)

    def take(self, n: int, seed: int = 0) -> "ImageSet":
        """A random subset of n images (fixed seed), or the whole set when it has at most n."""
        if n >= len(self):
            return self
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        return self.subset(order.sort().values)

    def examples_per_class(self, per_class: int, seed: int = 0) -> torch.Tensor:
        """Indices of up to `per_class` examples of each class, class by class (a browser grid).

        Chosen at random with a fixed seed, so the same settings always show the same images.
        """
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=generator)
        picked = []
        for cls in range(len(self.classes)):
            members = order[self.labels[order] == cls]
            picked.append(members[:per_class])
        return torch.cat(picked) if picked else torch.zeros(0, dtype=torch.int64)


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    shape: tuple[int, int, int]  # (C, H, W)
    classes: tuple[str, ...]
    torchvision_class: str  # name in torchvision.datasets
    folder: str  # what torchvision creates under root
    has_bundled: bool
    what: str


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "Fashion-MNIST", (1, 28, 28), tuple(FASHION_CLASSES), "FashionMNIST",
        "FashionMNIST/raw", True,
        "Zalando's 28×28 greyscale photos of clothes, shoes and bags: 60,000 training and 10,000 "
        "test images in 10 classes."),
    "mnist": DatasetInfo(
        "mnist", "MNIST", (1, 28, 28), tuple(MNIST_CLASSES), "MNIST", "MNIST/raw", False,
        "Handwritten digits 0–9, 28×28 greyscale: 60,000 training and 10,000 test images."),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", (3, 32, 32), tuple(CIFAR10_CLASSES), "CIFAR10", "cifar-10-batches-py",
        False,
        "The lecture's data set: 32×32 colour photos in 10 classes, 50,000 training and 10,000 "
        "test images."),
}


@dataclass(frozen=True)
class TrainingData:
    """A data set a CNN can be trained on: which set, from where, and what to call it."""

    name: str  # key of DATASETS
    source: str  # "bundled" or "full"
    title: str


# The training page's choices: the bundled subset works everywhere; the full sets when a server has them.
TRAINING_DATA: dict[str, TrainingData] = {
    "fashion": TrainingData("fashion-mnist", "bundled", "Fashion-MNIST, bundled subset (6,000 + 1,000 images)"),
    "fashion-full": TrainingData("fashion-mnist", "full", "Fashion-MNIST, full (60,000 + 10,000 images)"),
    "mnist": TrainingData("mnist", "full", "MNIST digits (60,000 + 10,000 images)"),
    "cifar10": TrainingData("cifar10", "full", "CIFAR-10, the lecture's data set (50,000 + 10,000 colour images)"),
}


def default_root() -> Path:
    """The data folder: $CNNVIZ_DATA if set, else data/ in the repository (git ignores it)."""
    env = os.environ.get("CNNVIZ_DATA", "").strip()
    return Path(env).expanduser() if env else ROOT / "data"


@dataclass(frozen=True)
class Folder:
    """A folder and how messages name it: by its path (`name` None), or by a name such as
    "the server's data folder", the files in it then by their path inside it."""

    path: Path
    name: str | None = None

    def __str__(self) -> str:
        return self.name or str(self.path)

    def file(self, path: Path, say_where: bool = True) -> str:
        """A file or folder in this folder, for a message: its path, or its path inside the
        named folder followed by the folder's name (unless the message says it already)."""
        if self.name is None:
            return str(path)
        try:
            inside = path.relative_to(self.path).as_posix()
        except ValueError:
            inside = path.name
        if inside == ".":
            return self.name
        return f"{inside} in {self.name}" if say_where else inside

    def scrub(self, text: str) -> str:
        """Someone else's message (the OS's, torchvision's) with this folder's path replaced by its name."""
        return text if self.name is None else text.replace(str(self.path), self.name)


def _folders(root: Path, root_name: str | None) -> tuple[Folder, Folder, Folder]:
    """The data folder, the bundled subset's folder and Debian's, as messages name them. Debian's
    is where its package puts the files on every machine, so it is named by its path."""
    bundled = Folder(BUNDLED_FASHION_DIR, None if root_name is None else "the app's assets/fashion-mnist folder")
    return Folder(root, root_name), bundled, Folder(DEBIAN_FASHION_DIR)


def _reason(error: OSError) -> str:
    """An OS error without its file name (messages name files themselves): 'Permission denied'."""
    return error.strerror or type(error).__name__


# ---------------------------------------------------------------------------------------------
# IDX files (MNIST / Fashion-MNIST), gzip-compressed or not
# ---------------------------------------------------------------------------------------------

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09}


def _corrupt(shown: str, why: str) -> DataUnavailable:
    return DataUnavailable(
        f"The file {shown} is corrupt ({why}). Delete it and download it again "
        "(or reinstall the package it came from).")


def read_idx(path: str | Path, shown: str | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or plain, into a numpy array.

    Raises DataUnavailable for a missing, truncated or malformed file, naming it `shown`
    (default: its path).
    """
    path = Path(path)
    shown = str(path) if shown is None else shown
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataUnavailable(f"The file {shown} does not exist.") from None
    except OSError as error:
        raise DataUnavailable(f"The file {shown} cannot be read: {_reason(error)}.") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, ValueError) as error:
            raise _corrupt(shown, f"broken gzip data: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or not 1 <= raw[3] <= 4:
        raise _corrupt(shown, "not an IDX file: wrong header")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(shown, "the header is cut off")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise _corrupt(shown, f"{len(raw) - header} data bytes where the header promises {expected}")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8/int8 array as an IDX file; gzip-compressed (reproducibly) if the name ends .gz."""
    array = np.ascontiguousarray(array)
    code = _IDX_CODES.get(array.dtype)
    if code is None:
        raise ValueError(f"write_idx supports uint8 and int8 arrays, not {array.dtype}")
    payload = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, compresslevel=9, mtime=0)
    path.write_bytes(payload)


def _idx_pair_to_set(name: str, split: str, images: np.ndarray, labels: np.ndarray,
                     classes: list[str], source: str, where: str) -> ImageSet:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise _corrupt(where, f"images should be N x H x W bytes, found shape {images.shape} {images.dtype}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise _corrupt(where, f"{len(labels)} labels for {len(images)} images")
    if len(labels) and int(labels.max()) >= len(classes):
        raise _corrupt(where, f"label {int(labels.max())} but only {len(classes)} classes")
    return ImageSet(name, split, torch.from_numpy(images).unsqueeze(1),
                    torch.from_numpy(labels.astype(np.int64)), list(classes), source)


def _read_idx_folder(folder: Folder, name: str, split: str, source: str) -> ImageSet:
    image_path, label_path = (folder.path / f for f in FASHION_FILES[split])
    images = read_idx(image_path, folder.file(image_path))
    labels = read_idx(label_path, folder.file(label_path))
    return _idx_pair_to_set(name, split, images, labels, list(DATASETS[name].classes), source, str(folder))


def _idx_folder_present(folder: Path) -> bool:
    return all((folder / f).is_file() for pair in FASHION_FILES.values() for f in pair)


# ---------------------------------------------------------------------------------------------
# torchvision's dataset classes
# ---------------------------------------------------------------------------------------------

def _tv_class(name: str):
    import torchvision.datasets as tvd

    return getattr(tvd, DATASETS[name].torchvision_class)


def _tv_expected_files(name: str, root: Path) -> list[tuple[Path, str | None]]:
    """The files torchvision reads for `name` under `root`, with the MD5 sum it checks (or None)."""
    cls = _tv_class(name)
    if name == "cifar10":
        folder = root / cls.base_folder
        entries = [(folder / f, md5) for f, md5 in cls.train_list + cls.test_list]
        return entries + [(folder / cls.meta["filename"], cls.meta["md5"])]
    folder = root / cls.__name__ / "raw"
    return [(folder / Path(f).with_suffix("").name, None) for f, _ in cls.resources]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tv_missing(name: str, root: Path) -> list[Path]:
    return [path for path, _ in _tv_expected_files(name, root) if not path.is_file()]


def _tv_corrupt(name: str, root: Path) -> list[Path]:
    return [path for path, md5 in _tv_expected_files(name, root)
            if md5 is not None and path.is_file() and _md5(path) != md5]


def download_urls(name: str) -> list[str]:
    """Where the files come from (torchvision's own list): for messages and downloads."""
    cls = _tv_class(name)
    if name == "cifar10":
        return [cls.url]
    return [f"{cls.mirrors[0]}{filename}" for filename, _ in cls.resources]


def download_label(name: str) -> str:
    """The label of the app's button that downloads `name` (messages tell users to press it)."""
    return f"Download {DATASETS[name].title}"


def how_to_get(name: str, root: str | Path | None = None, root_name: str | None = None) -> str:
    """A paragraph telling a user how to get the full data set onto this machine (the data
    folder named by `root_name` when given, see the module docstring)."""
    folder = Folder(Path(root) if root is not None else default_root(), root_name)
    info = DATASETS[name]
    urls = ", ".join(download_urls(name))
    lines = []
    if name == "fashion-mnist":
        lines.append("On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` "
                     f"(files land in {DEBIAN_FASHION_DIR}).")
    lines.append(f"Online: press *{download_label(name)}* and the app fetches torchvision's files into {folder}.")
    if name == "cifar10":
        lines.append(f"By hand: download {urls} and unpack it in {folder}; that makes the folder "
                     f"{info.folder} with data_batch_1 … data_batch_5, test_batch and batches.meta.")
    else:
        image_file = FASHION_FILES["train"][0].removesuffix(".gz")
        lines.append(f"By hand: download {urls}, unzip each (gunzip) and put the four files, such as "
                     f"{image_file}, in {folder.file(folder.path / info.folder)}.")
    if root_name is None:
        lines.append("Another folder: set the CNNVIZ_DATA environment variable before starting the app.")
    else:
        lines.append("The server's admin chooses that folder with the CNNVIZ_DATA environment variable "
                     "(default: data/ in the app's folder).")
    return " ".join(lines)


def _tv_load(name: str, split: str, folder: Folder) -> ImageSet:
    root, title = folder.path, DATASETS[name].title
    get = how_to_get(name, root, folder.name)
    missing = _tv_missing(name, root)
    if missing:
        raise DataUnavailable(
            f"{title} is not in {folder} (missing {folder.file(missing[0], say_where=False)}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "") + "). " + get)
    corrupt = _tv_corrupt(name, root)
    if corrupt:
        raise DataUnavailable(
            f"The file {folder.file(corrupt[0])} is corrupt (its MD5 sum is not the one torchvision expects). "
            f"Delete it and download {title} again. " + get)
    cls = _tv_class(name)
    try:
        dataset = cls(root=str(root), train=(split == "train"), download=False)
    except Exception as error:  # truncated or malformed files fail in many ways inside torchvision
        raise DataUnavailable(
            f"{title} in {folder} could not be read ({type(error).__name__}: {folder.scrub(str(error))}); "
            "a file is probably corrupt or cut off. Delete its folder and download again. " + get) from None
    data = dataset.data
    if name == "cifar10":  # numpy (N, H, W, C) uint8, labels a list
        images = torch.from_numpy(np.ascontiguousarray(np.asarray(data, dtype=np.uint8).transpose(0, 3, 1, 2)))
        classes = list(dataset.classes)
    else:  # tensor (N, H, W) uint8
        images = torch.as_tensor(data, dtype=torch.uint8).unsqueeze(1).contiguous()
        classes = list(DATASETS[name].classes)
    labels = torch.as_tensor(np.asarray(dataset.targets), dtype=torch.int64)
    if labels.shape[0] != images.shape[0] or (len(labels) and int(labels.max()) >= len(classes)):
        raise DataUnavailable(f"{title} in {folder} has inconsistent labels; "
                              "a file is corrupt. Delete its folder and download again.")
    return ImageSet(name, split, images, labels, classes, f"torchvision's files in {folder}")


def _fetch(url: str, dest: Path, md5: str | None, progress: Progress, lo: float, hi: float, folder: Folder) -> None:
    """Download `url` to `dest` (via a .part file), reporting progress in [lo, hi], checking MD5."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    label = url.rsplit("/", 1)[-1]
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            digest = hashlib.md5()
            while True:
                block = response.read(CHUNK_BYTES)
                if not block:
                    break
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    fraction = done / total if total else 0.0
                    size = f"{done / 1e6:.1f} of {total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
                    progress(lo + (hi - lo) * min(fraction, 1.0), f"Downloading {label}: {size}")
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        part.unlink(missing_ok=True)
        reason = folder.scrub(str(getattr(error, "reason", error)))
        raise DataUnavailable(f"Could not download {url} ({reason}). Are you online?") from None
    if md5 is not None and digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DataUnavailable(f"The download of {url} is corrupt (MD5 {digest.hexdigest()}, "
                              f"expected {md5}). Try again later.")
    part.replace(dest)


def _tv_download(name: str, folder: Folder, progress: Progress) -> None:
    """Fetch the files torchvision expects, with progress, then unpack them where it reads them."""
    from torchvision.datasets.utils import extract_archive

    cls = _tv_class(name)
    root = folder.path
    if name == "cifar10":
        archive = root / cls.filename
        if not (archive.is_file() and _md5(archive) == cls.tgz_md5):
            _fetch(cls.url, archive, cls.tgz_md5, progress, 0.0, 0.95, folder)
        if progress is not None:
            progress(0.95, f"Unpacking {archive.name}")
        shutil.rmtree(root / cls.base_folder, ignore_errors=True)
        extract_archive(str(archive), str(root))
        return
    raw = root / cls.__name__ / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    count = len(cls.resources)
    for i, (filename, md5) in enumerate(cls.resources):
        target = raw / Path(filename).with_suffix("").name
        if target.is_file():
            continue
        errors = []
        for mirror in cls.mirrors:
            try:
                _fetch(f"{mirror}{filename}", raw / filename, md5, progress, i / count, (i + 1) / count, folder)
                break
            except DataUnavailable as error:
                errors.append(str(error))
        else:
            raise DataUnavailable(" ".join(errors) + " " + how_to_get(name, root, folder.name))
        extract_archive(str(raw / filename), str(raw))


# ---------------------------------------------------------------------------------------------
# The entry points
# ---------------------------------------------------------------------------------------------

def full_present(name: str, root: str | Path | None = None) -> str | None:
    """Where the full data set is on this machine already ("debian" / "torchvision"), or None
    (also when a folder cannot be looked into: loading it then says why)."""
    root = Path(root) if root is not None else default_root()
    try:
        if name == "fashion-mnist" and _idx_folder_present(DEBIAN_FASHION_DIR):
            return "debian"
        if not _tv_missing(name, root):
            return "torchvision"
    except OSError:  # a folder the app may not read
        pass
    return None


def _root(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None and str(root).strip() else default_root()


def download_full(name: str, *, root: str | Path | None = None, root_name: str | None = None,
                  progress: Progress = None) -> None:
    """Fetch the full data set into the data folder (torchvision's files, from the addresses
    torchvision lists, MD5-checked), unless it is on this machine already."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(NAMES)}.")
    folder = Folder(_root(root), root_name)
    title = DATASETS[name].title
    try:
        if full_present(name, folder.path) is None:
            try:
                folder.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise DataUnavailable(f"Cannot create {folder}: {_reason(error)}. "
                                      + how_to_get(name, folder.path, root_name)) from None
            _tv_download(name, folder, progress)
    except OSError as error:  # a full disk, a folder the app may not write to
        raise DataUnavailable(f"Could not save {title} in {folder}: {_reason(error)}.") from None
    if progress is not None:
        progress(1.0, f"{title} downloaded to {folder}")


def load_images(name: str = "fashion-mnist", split: str = "train", *, source: str = "auto",
                root: str | Path | None = None, root_name: str | None = None, download: bool = False,
                progress: Progress = None) -> ImageSet:
    """One split of a data set as an ImageSet (see the module docstring for `source`, and for
    `root_name`, the name messages give the data folder)."""
    if name not in DATASETS:
        raise ValueError(f"Unknown data set {name!r}; choose one of {', '.join(NAMES)}.")
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose 'train' or 'test'.")
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; choose one of {', '.join(SOURCES)}.")
    data_folder, bundled_folder, debian_folder = _folders(_root(root), root_name)
    info = DATASETS[name]
    try:
        if source == "bundled":
            if not info.has_bundled:
                raise DataUnavailable(f"Only Fashion-MNIST comes bundled with the app, not {info.title}. "
                                      + how_to_get(name, data_folder.path, root_name))
            return _read_idx_folder(bundled_folder, name, split, "bundled subset")
        where = full_present(name, data_folder.path)
        if where == "debian":
            return _read_idx_folder(debian_folder, name, split, "Debian dataset-fashion-mnist")
        if where == "torchvision":
            return _tv_load(name, split, data_folder)
        if download:
            download_full(name, root=data_folder.path, root_name=root_name, progress=progress)
            return _tv_load(name, split, data_folder)
        if source == "auto" and info.has_bundled:
            return _read_idx_folder(bundled_folder, name, split, "bundled subset")
        # Not present and no download asked for: say why (corrupt vs missing) and what to do.
        return _tv_load(name, split, data_folder)
    except OSError as error:  # a folder the app may not read
        raise DataUnavailable(f"{info.title} cannot be read from {data_folder}: {_reason(error)}.") from None
