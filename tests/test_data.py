"""Loading data sets: the bundled subset, Debian's files, and torchvision's own dataset classes.

Every loader is exercised on tiny files these tests write in each data set's real on-disk
format (IDX gz for Fashion-MNIST, IDX raw under MNIST/raw for torchvision, CIFAR-10's python
pickle batches plus batches.meta), so nothing is downloaded and nothing needs to be installed.

CIFAR-10 and MD5: torchvision checks every CIFAR file against the MD5 sum of the real file
before reading it. Our tiny files cannot have those sums, so the tests set torchvision's
expected-sum lists (CIFAR10.train_list / test_list / meta, and the MNIST resources for the
download) to the sums of the files they wrote: exactly the situation of a real, intact file.
torchvision's own integrity check and reader then run unchanged, and the corrupt-file tests
keep the real sums to show what a user with a damaged file sees.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from cnnviz import data
from cnnviz.data import DataUnavailable, load_images, read_idx, write_idx


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def random_split(n: int, shape=(28, 28), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.uint8)


def write_idx_folder(folder: Path, gz: bool, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four MNIST-style files (train 12, test 7 images) in `folder`; returns what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for split, n in (("train", 12), ("test", 7)):
        images, labels = random_split(n, seed=seed + n)
        image_file, label_file = data.FASHION_FILES[split]
        if not gz:
            image_file, label_file = image_file.removesuffix(".gz"), label_file.removesuffix(".gz")
        write_idx(folder / image_file, images)
        write_idx(folder / label_file, labels)
        written[split] = (images, labels)
    return written


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian-here")


# ---- the IDX format -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["x-idx3-ubyte.gz", "x-idx3-ubyte"])
def test_idx_round_trip_and_header_bytes(tmp_path, name):
    images, _ = random_split(5, shape=(4, 3))
    write_idx(tmp_path / name, images)
    raw = (tmp_path / name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    # magic 0x00000803 (unsigned bytes, 3 dims), then the sizes big-endian
    assert raw[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 4, 0, 0, 0, 3])
    assert np.array_equal(read_idx(tmp_path / name), images)


@pytest.mark.parametrize("damage, why", [
    (lambda raw: raw[:-10], "data bytes where the header promises"),
    (lambda raw: b"\x00\x00\x99\x03" + raw[4:], "not an IDX file"),
    (lambda raw: b"PK\x03\x04" + raw[4:], "not an IDX file"),
    (lambda raw: raw[:6], "cut off"),
])
def test_damaged_idx_files_are_reported_as_corrupt(tmp_path, damage, why):
    images, _ = random_split(3)
    write_idx(tmp_path / "a-idx3-ubyte", images)
    path = tmp_path / "a-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataUnavailable, match=why) as info:
        read_idx(path)
    assert "corrupt" in str(info.value) and str(path) in str(info.value)


def test_broken_gzip_is_reported_as_corrupt(tmp_path):
    images, _ = random_split(50)
    write_idx(tmp_path / "a.gz", images)
    raw = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "a.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataUnavailable, match="corrupt.*gzip"):
        read_idx(tmp_path / "a.gz")


# ---- the bundled subset ---------------------------------------------------------------------

@pytest.mark.parametrize("split, per_class", [("train", 600), ("test", 100)])
def test_bundled_fashion_subset_is_class_balanced_uint8(split, per_class):
    s = load_images("fashion-mnist", split, source="bundled")
    assert s.images.dtype == torch.uint8 and s.labels.dtype == torch.int64
    assert s.images.shape == (10 * per_class, 1, 28, 28)
    assert s.class_counts().tolist() == [per_class] * 10
    assert s.classes == tvd.FashionMNIST.classes  # torchvision's names, in label order
    assert s.source == "bundled subset" and s.shape_text == "28×28×1"  # cnnviz.notation's shape
    # real photos, not noise: a dark background, and a bag differs from a sandal on average
    assert float(s.images[:, :, 0, 0].float().mean()) < 10
    mean_by_class = torch.stack([s.images[s.labels == c].float().mean(0) for c in range(10)])
    assert float((mean_by_class[8] - mean_by_class[5]).abs().mean()) > 20


def test_subset_script_is_class_balanced_and_reproducible(tmp_path):
    """scripts/make_fashion_subset.py (which made the bundled files) on a generated source."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_subset", data.ROOT / "scripts" / "make_fashion_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(2)
    for split, n in (("train", 60), ("test", 40)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)  # every image tagged with its index
        write_idx(source / data.FASHION_FILES[split][0], images)
        write_idx(source / data.FASHION_FILES[split][1], (np.arange(n) % 10).astype(np.uint8))
    for out in ("a", "b"):
        assert script.main(["--source", str(source), "--out", str(tmp_path / out), "--train", "3",
                            "--test", "2"]) == 0
    for split, per_class in (("train", 3), ("test", 2)):
        image_file, label_file = data.FASHION_FILES[split]
        images, labels = read_idx(tmp_path / "a" / image_file), read_idx(tmp_path / "a" / label_file)
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
        original = read_idx(source / image_file)
        assert np.array_equal(images, original[images[:, 0, 0]])  # unchanged rows of the source
        assert np.array_equal(labels, images[:, 0, 0] % 10)
        for name in (image_file, label_file):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_auto_without_full_files_uses_the_bundled_subset(no_debian, tmp_path):
    s = load_images("fashion-mnist", "test", root=tmp_path / "empty")
    assert s.source == "bundled subset" and len(s) == 1000


def test_bundled_exists_only_for_fashion_mnist(tmp_path):
    for name in ("mnist", "cifar10"):
        with pytest.raises(DataUnavailable, match="Only Fashion-MNIST comes bundled"):
            load_images(name, source="bundled", root=tmp_path)


def test_unknown_names_are_value_errors():
    with pytest.raises(ValueError, match="Unknown data set"):
        load_images("imagenet")
    with pytest.raises(ValueError, match="split"):
        load_images("mnist", "validation")
    with pytest.raises(ValueError, match="source"):
        load_images("mnist", source="cloud")


def test_examples_per_class_picks_from_every_class_reproducibly():
    s = load_images("fashion-mnist", "test", source="bundled")
    picked = s.examples_per_class(4, seed=3)
    assert s.labels[picked].tolist() == [c for c in range(10) for _ in range(4)]
    assert torch.equal(picked, s.examples_per_class(4, seed=3))
    assert not torch.equal(picked, s.examples_per_class(4, seed=4))


# ---- Debian's dataset-fashion-mnist ---------------------------------------------------------

def test_debian_files_are_the_full_set_when_present(monkeypatch, tmp_path):
    written = write_idx_folder(tmp_path / "debian", gz=True)
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "debian")
    for source in ("auto", "full"):
        for split, (images, labels) in written.items():
            s = load_images("fashion-mnist", split, source=source, root=tmp_path / "empty")
            assert s.source == "Debian dataset-fashion-mnist"
            assert torch.equal(s.images, torch.from_numpy(images).unsqueeze(1))
            assert torch.equal(s.labels, torch.from_numpy(labels).long())
    # "bundled" still means the subset
    assert load_images("fashion-mnist", "test", source="bundled").source == "bundled subset"


# ---- torchvision: MNIST and Fashion-MNIST (raw IDX files) -----------------------------------

@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_torchvision_idx_datasets_load_in_one_go(no_debian, tmp_path, name, folder):
    written = write_idx_folder(tmp_path / folder / "raw", gz=False, seed=5)
    for split, (images, labels) in written.items():
        s = load_images(name, split, source="full", root=tmp_path)
        assert s.source == f"torchvision's files in {tmp_path}"
        assert s.images.shape == (len(images), 1, 28, 28) and s.images.dtype == torch.uint8
        assert torch.equal(s.images[:, 0], torch.from_numpy(images))
        assert torch.equal(s.labels, torch.from_numpy(labels).long())
        assert s.classes == list(data.DATASETS[name].classes)
    # and torchvision reads the same
    reference = getattr(tvd, folder)(str(tmp_path), train=True)
    assert torch.equal(load_images(name, "train", source="full", root=tmp_path).images[:, 0], reference.data)


def test_mnist_missing_says_where_to_put_what(no_debian, tmp_path):
    with pytest.raises(DataUnavailable) as info:
        load_images("mnist", root=tmp_path)
    message = str(info.value)
    assert f"MNIST is not in {tmp_path}" in message
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte") in message
    assert tvd.MNIST.mirrors[0] in message and "download" in message
    # the button the app really has (a button, not a tick box), and the server setting for another folder
    assert "press *Download MNIST*" in message and "tick" not in message
    assert data.download_label("mnist") == "Download MNIST"
    assert "CNNVIZ_DATA" in message and "set the data folder in the app" not in message


def test_full_fashion_without_any_files_explains_debian_and_download(no_debian, tmp_path):
    with pytest.raises(DataUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_images("fashion-mnist", source="full", root=tmp_path)


def test_truncated_mnist_file_is_a_clear_message(no_debian, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw, gz=False)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataUnavailable, match="corrupt or cut off"):
        load_images("mnist", "train", root=tmp_path)


# ---- messages for the visitors of a shared server: the data folder named, never its path ------

SERVER_FOLDER = "the server's data folder"


def assert_names_the_folder(message: str, tmp_path: Path) -> None:
    assert str(tmp_path) not in message and "/tmp" not in message, message
    assert SERVER_FOLDER in message, message


def test_missing_data_named_for_visitors_with_what_the_admin_does(no_debian, tmp_path):
    with pytest.raises(DataUnavailable) as info:
        load_images("mnist", root=tmp_path, root_name=SERVER_FOLDER)
    message = str(info.value)
    assert_names_the_folder(message, tmp_path)
    assert "MNIST is not in the server's data folder (missing MNIST/raw/train-images-idx3-ubyte and 3 more)" \
        in message
    assert "put the four files, such as train-images-idx3-ubyte, in MNIST/raw in the server's data folder" in message
    assert "CNNVIZ_DATA environment variable" in message and tvd.MNIST.mirrors[0] in message
    with pytest.raises(DataUnavailable) as info:
        load_images("cifar10", source="bundled", root=tmp_path, root_name=SERVER_FOLDER)
    assert_names_the_folder(str(info.value), tmp_path)


def test_damaged_files_named_for_visitors(no_debian, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    write_idx_folder(raw, gz=False)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])  # torchvision's own error message names the file
    with pytest.raises(DataUnavailable, match="corrupt or cut off") as info:
        load_images("mnist", "train", root=tmp_path, root_name=SERVER_FOLDER)
    assert_names_the_folder(str(info.value), tmp_path)
    write_cifar(tmp_path)  # tiny files: their MD5 sums are not the real ones
    with pytest.raises(DataUnavailable) as info:
        load_images("cifar10", root=tmp_path, root_name=SERVER_FOLDER)
    assert "The file cifar-10-batches-py/data_batch_1 in the server's data folder is corrupt" in str(info.value)
    assert_names_the_folder(str(info.value), tmp_path)


def test_failed_downloads_named_for_visitors(no_debian, monkeypatch, tmp_path):
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: refused at once
    with pytest.raises(DataUnavailable, match="Are you online") as info:
        data.download_full("mnist", root=tmp_path / "root", root_name=SERVER_FOLDER)
    assert_names_the_folder(str(info.value), tmp_path)
    (tmp_path / "a file").write_text("not a folder")
    with pytest.raises(DataUnavailable, match="Cannot create the server's data folder") as info:
        data.download_full("mnist", root=tmp_path / "a file", root_name=SERVER_FOLDER)
    assert_names_the_folder(str(info.value), tmp_path)


def test_a_data_folder_the_app_may_not_read_is_a_message(no_debian, monkeypatch, tmp_path):
    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "is_file", refused)
    assert data.full_present("mnist", tmp_path) is None
    with pytest.raises(DataUnavailable) as info:
        load_images("mnist", root=tmp_path, root_name=SERVER_FOLDER)
    assert str(info.value) == "MNIST cannot be read from the server's data folder: Permission denied."


def test_loaded_sets_say_where_they_come_from_without_a_path(no_debian, tmp_path):
    write_idx_folder(tmp_path / "MNIST" / "raw", gz=False)
    s = load_images("mnist", "test", root=tmp_path, root_name=SERVER_FOLDER)
    assert s.source == "torchvision's files in the server's data folder"


# ---- torchvision: CIFAR-10 (python pickle batches) ------------------------------------------

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar(root: Path, per_batch: int = 4) -> dict[str, tuple[np.ndarray, list[int]]]:
    """CIFAR-10's python version: pickled dicts with 'data' (N x 3072 uint8, R then G then B
    planes, each row-major) and 'labels', plus batches.meta with the class names."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for name in CIFAR_FILES:
        batch = {"batch_label": name, "data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist(),
                 "filenames": [f"img_{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        written[name] = (batch["data"], batch["labels"])
    meta = {"label_names": data.CIFAR10_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def accept_written_cifar(monkeypatch, root: Path) -> None:
    """Make torchvision's expected MD5 sums those of the files just written (see module docstring)."""
    folder = root / "cifar-10-batches-py"
    sums = {name: md5(folder / name) for name in CIFAR_FILES + ["batches.meta"]}
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[n, sums[n]] for n in CIFAR_FILES[:5]])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": sums["batches.meta"]})


def test_cifar10_batches_become_one_nchw_tensor(monkeypatch, tmp_path):
    written = write_cifar(tmp_path)
    accept_written_cifar(monkeypatch, tmp_path)
    train = load_images("cifar10", "train", root=tmp_path)
    test = load_images("cifar10", "test", root=tmp_path)
    assert train.images.shape == (20, 3, 32, 32) and test.images.shape == (4, 3, 32, 32)
    assert train.images.dtype == torch.uint8 and train.shape_text == "32×32×3"
    assert train.images.is_contiguous()
    rows = np.concatenate([written[n][0] for n in CIFAR_FILES[:5]])
    # the real layout: 1024 red values, then 1024 green, then 1024 blue, each 32x32 row-major
    assert torch.equal(train.images, torch.from_numpy(rows.reshape(20, 3, 32, 32)))
    assert int(train.images[0, 1, 0, 2]) == int(rows[0, 1024 + 2])
    assert train.labels.tolist() == sum((written[n][1] for n in CIFAR_FILES[:5]), [])
    assert test.labels.tolist() == written["test_batch"][1]
    assert train.classes == data.CIFAR10_CLASSES and train.source == f"torchvision's files in {tmp_path}"


def test_cifar10_corrupt_file_names_the_file(tmp_path):
    write_cifar(tmp_path)  # tiny files: their MD5 sums are not the real ones torchvision expects
    with pytest.raises(DataUnavailable) as info:
        load_images("cifar10", root=tmp_path)
    message = str(info.value)
    assert "is corrupt" in message and "data_batch_1" in message and "download" in message


def test_cifar10_missing_gives_url_and_layout(tmp_path):
    with pytest.raises(DataUnavailable) as info:
        load_images("cifar10", root=tmp_path / "nowhere")
    message = str(info.value)
    assert tvd.CIFAR10.url in message
    assert "cifar-10-batches-py" in message and "batches.meta" in message


# ---- downloads (from file:// addresses standing in for the internet) ------------------------

def test_mnist_download_with_progress(no_debian, monkeypatch, tmp_path):
    server = tmp_path / "server"
    written = write_idx_folder(server, gz=True, seed=9)
    monkeypatch.setattr(tvd.MNIST, "mirrors", [server.as_uri() + "/"])
    monkeypatch.setattr(tvd.MNIST, "resources", [(f, md5(server / f)) for f, _ in tvd.MNIST.resources])
    calls = []
    s = load_images("mnist", "test", root=tmp_path / "root", download=True,
                    progress=lambda f, text: calls.append((f, text)))
    assert torch.equal(s.images[:, 0], torch.from_numpy(written["test"][0]))
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 5
    assert any("Downloading t10k-images-idx3-ubyte.gz" in text for _, text in calls)
    assert (tmp_path / "root" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()
    # the second time nothing is fetched
    calls.clear()
    load_images("mnist", "train", root=tmp_path / "root", download=True, progress=lambda f, t: calls.append(t))
    assert not any("Downloading" in text for text in calls)
    data.download_full("mnist", root=tmp_path / "root", progress=lambda f, t: calls.append(t))
    assert calls[-1] == f"MNIST downloaded to {tmp_path / 'root'}" and not any("Downloading" in t for t in calls)


def test_download_with_wrong_checksum_is_refused(no_debian, monkeypatch, tmp_path):
    server = tmp_path / "server"
    write_idx_folder(server, gz=True)
    monkeypatch.setattr(tvd.MNIST, "mirrors", [server.as_uri() + "/"])  # real sums kept: mismatch
    with pytest.raises(DataUnavailable, match="is corrupt"):
        load_images("mnist", root=tmp_path / "root", download=True)
    assert not list((tmp_path / "root" / "MNIST" / "raw").glob("*ubyte*"))


def test_offline_download_says_so(no_debian, monkeypatch, tmp_path):
    monkeypatch.setattr(tvd.MNIST, "mirrors", [(tmp_path / "unreachable").as_uri() + "/"])
    with pytest.raises(DataUnavailable, match="Could not download .* Are you online"):
        load_images("mnist", root=tmp_path / "root", download=True)


def test_cifar10_download_unpacks_the_archive(monkeypatch, tmp_path):
    source = tmp_path / "made"
    written = write_cifar(source)
    accept_written_cifar(monkeypatch, source)
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "url", archive.as_uri())
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", md5(archive))
    calls = []
    s = load_images("cifar10", "test", root=tmp_path / "root", download=True,
                    progress=lambda f, text: calls.append(f))
    assert torch.equal(s.images, torch.from_numpy(written["test_batch"][0].reshape(-1, 3, 32, 32)))
    assert calls[-1] == 1.0


def test_take_is_a_fixed_random_subset():
    s = load_images("fashion-mnist", "test", source="bundled")
    a, b = s.take(100, seed=1), s.take(100, seed=1)
    assert len(a) == 100 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, s.take(100, seed=2).labels)
    # each picked image is the test image it claims to be
    first = int((s.images.flatten(1) == a.images[0].flatten()).all(1).nonzero()[0])
    assert int(s.labels[first]) == int(a.labels[0])
    assert s.take(5000) is s
