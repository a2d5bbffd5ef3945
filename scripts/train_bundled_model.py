"""Train the small Fashion-MNIST CNN that ships in assets/models/fashion_cnn.pt.

    python scripts/train_bundled_model.py            # about three minutes on 2 CPU cores

Reproducible: fixed seeds, deterministic algorithms, a fixed shuffling generator and a fixed
number of threads, on the full Fashion-MNIST (60,000 training images from Debian's
`dataset-fashion-mnist`: `apt-get install dataset-fashion-mnist`, or torchvision's files
under data/). The stack is the lecture-style preset of cnnviz.network (three blocks of
3x3 convolution, ReLU and 2x2 max pooling, then one fully connected layer). The test
accuracy on the 10,000 test images is stored in the checkpoint's metrics and printed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz.checkpoint import Checkpoint, save_checkpoint  # noqa: E402
from cnnviz.classify import BUNDLED_MODEL  # noqa: E402
from cnnviz.data import load_images  # noqa: E402
from cnnviz.network import LECTURE_STACK, build_model  # noqa: E402

STACK = LECTURE_STACK
IN_SHAPE = (1, 28, 28)
SEED = 0


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 2000) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(labels), batch):
            x = images[i:i + batch].float() / 255.0
            correct += int((model(x).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BUNDLED_MODEL)
    args = parser.parse_args()

    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(args.threads)
    train = load_images("fashion-mnist", "train", source="full")
    test = load_images("fashion-mnist", "test", source="full")
    print(f"train: {len(train):,} images ({train.source}), test: {len(test):,} images")

    model = build_model(STACK, IN_SHAPE)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * ((len(train) + args.batch - 1) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(SEED)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            x = train.images[idx].float() / 255.0
            loss = loss_fn(model(x), train.labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: mean training loss {total / len(train):.4f} "
              f"({time.perf_counter() - start:.0f} s)")
    seconds = time.perf_counter() - start
    train_acc = accuracy(model, train.images[:10_000], train.labels[:10_000])  # a sample: time
    test_acc = accuracy(model, test.images, test.labels)
    print(f"training accuracy {train_acc:.2%} (first 10,000), test accuracy {test_acc:.2%} on {len(test):,} images, "
          f"{seconds:.0f} s of training")

    ckpt = Checkpoint.from_model(model, STACK, IN_SHAPE, train.classes, "fashion-mnist", {
        "test_accuracy": test_acc, "train_accuracy": train_acc, "epochs": args.epochs,
        "training_seconds": round(seconds, 1), "seed": SEED,
    })
    data = save_checkpoint(ckpt)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data) / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
