#!/usr/bin/env python
"""Time the "What models learn" engine: loading data, training the three models, drawing them.

    python benchmarks/learn_speed.py              # bundled Fashion-MNIST subset (about a minute)
    python benchmarks/learn_speed.py --quick      # linear and MLP only

Goals (issue 5 and its notes): the bundled subset loads in well under a second; each model
trains "in seconds" on 2 CPU cores (linear and MLP a few seconds, the CNN about ten), and
drawing a template grid costs a few milliseconds. It also compares training with one torch
thread (the engine's default, `learn.TRAIN_THREADS`) against torch's default thread count,
in the same run: the reason for that default.

The CNN's first-layer filters are what the page shows: the run prints how smooth they are
(`learn.neighbour_correlation`: about 0 for noise, near 1 for a smooth picture) and how large
what training added is against the random start, for the engine's small start
(`learn.FIRST_LAYER_INIT_SCALE`) and for torch's default size, with the accuracy of each.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnnviz import learn  # noqa: E402
from cnnviz.data import DEBIAN_FASHION_DIR, load_images  # noqa: E402
from cnnviz.learn_figures import image_grid_figure  # noqa: E402

GOALS_S = {"linear": 5.0, "mlp": 5.0, "cnn": 15.0}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def filters_report(train, test, scale: float) -> bool:
    """Train the page's CNN from a first layer `scale` times torch's default size; True when its
    filters are smooth (mean neighbour correlation above 0.4, as tests/test_learn.py asks)."""
    engine_scale = learn.FIRST_LAYER_INIT_SCALE
    learn.FIRST_LAYER_INIT_SCALE = scale
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            start = learn.first_conv(learn.make_model("cnn", train.shape)).weight.detach().clone()
        result = learn.train("cnn", train, test, seed=0)
    finally:
        learn.FIRST_LAYER_INIT_SCALE = engine_scale
    filters = learn.first_layer_filters(result)
    smooth = float(learn.neighbour_correlation(filters).mean())
    added = float((filters - start).norm() / start.norm())
    print(f"  start {scale:g} x torch's default: neighbour correlation {smooth:.2f} (noise: about 0), "
          f"|learned change| / |start| = {added:.1f}, test accuracy {result.test_accuracy:.1%}, "
          f"{result.seconds:.1f} s")
    return smooth > 0.4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the CNN")
    args = parser.parse_args()
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {default_threads} threads by default")

    (train, load_s) = timed(load_images, "fashion-mnist", "train", source="bundled")
    test, load_test_s = timed(load_images, "fashion-mnist", "test", source="bundled")
    print(f"load bundled subset: train {len(train):,} images {1000 * load_s:.0f} ms, "
          f"test {len(test):,} images {1000 * load_test_s:.0f} ms")
    if DEBIAN_FASHION_DIR.is_dir():
        full, full_s = timed(load_images, "fashion-mnist", "train", source="full")
        print(f"load full set ({full.source}): {len(full):,} images {1000 * full_s:.0f} ms")

    kinds = ["linear", "mlp"] if args.quick else list(learn.KINDS)
    for kind in kinds:  # warm-up: torch's first calls of each operator are slower
        learn.train(kind, train.take(500), test.take(200), epochs=1)
    met = True
    print(f"{'model':8} {'params':>8} {'epochs':>6} {'1 thread':>10} {str(default_threads) + ' threads':>10} "
          f"{'ratio':>6} {'test acc':>9}  goal")
    for kind in kinds:
        one = learn.train(kind, train, test, threads=1)
        many = learn.train(kind, train, test, threads=None)
        ok = one.seconds <= GOALS_S[kind]
        met &= ok
        print(f"{kind:8} {one.parameters:8,} {one.settings['epochs']:6} {one.seconds:9.1f}s {many.seconds:9.1f}s "
              f"{many.seconds / one.seconds:5.1f}x {one.test_accuracy:9.1%}  <= {GOALS_S[kind]:.0f} s: "
              f"{'met' if ok else 'NOT met'}")

    if "cnn" in kinds:
        print("CNN first-layer filters after the default epochs (page defaults):")
        for scale in (learn.FIRST_LAYER_INIT_SCALE, 1.0):
            met &= filters_report(train, test, scale) or scale != learn.FIRST_LAYER_INIT_SCALE

    result = learn.train("linear", train, test, epochs=1)
    templates = learn.linear_templates(result)
    times = []
    for _ in range(20):
        _, seconds = timed(image_grid_figure, templates, mode="signed", columns=5, captions=result.classes,
                           cell_px=160, colorbar=True)
        times.append(seconds)
    times.sort()
    print(f"template grid figure (10 x 28x28, PNG): median {1000 * times[10]:.1f} ms, min {1000 * times[0]:.1f} ms")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
