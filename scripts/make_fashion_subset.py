"""Make the small Fashion-MNIST subset bundled in assets/fashion-mnist/.

Reads the full data set from Debian's `dataset-fashion-mnist` package
(`apt-get install dataset-fashion-mnist`, files in /usr/share/datasets/fashion-mnist) or any
folder holding the four original `*-idx?-ubyte.gz` files, picks a class-balanced random
subset with a fixed seed (600 training and 100 test images per class by default), and writes
it in the same IDX gz format under the same file names, so the app reads the subset and the
full set with one reader. Running it twice gives byte-identical files (gzip mtime 0).

    python scripts/make_fashion_subset.py [--source DIR] [--out DIR] [--train 600] [--test 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz.data import DEBIAN_FASHION_DIR, FASHION_FILES, read_idx, write_idx  # noqa: E402

SEED = 20170825  # the day Fashion-MNIST was published


def balanced_subset(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of `per_class` random examples of each class, in their original order."""
    picked = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise SystemExit(f"class {cls} has only {len(members)} examples, {per_class} asked for")
        picked.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEBIAN_FASHION_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "fashion-mnist")
    parser.add_argument("--train", type=int, default=600, help="training images per class")
    parser.add_argument("--test", type=int, default=100, help="test images per class")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", args.train), ("test", args.test)):
        image_file, label_file = FASHION_FILES[split]
        images = read_idx(args.source / image_file)
        labels = read_idx(args.source / label_file)
        keep = balanced_subset(labels, per_class, rng)
        for name, array in ((image_file, images[keep]), (label_file, labels[keep])):
            write_idx(args.out / name, array)
            print(f"{args.out / name}: {array.shape}, {(args.out / name).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
