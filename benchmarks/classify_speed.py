#!/usr/bin/env python
"""What classifying one image costs on the classify page: preprocessing, the recorded forward
pass (hooks copying every convolution's maps), the plain forward pass, and the memory the maps take.

    python benchmarks/classify_speed.py                       # bundled CNN, ResNet-18, VGG-16
    python benchmarks/classify_speed.py --models bundled resnet18

The ImageNet models get random weights of the real architecture (speed does not depend on the
values, and no download is needed). Goals: recording every activation map costs at most 2x a
plain forward pass or 5 ms more, whichever is larger (fastest of --runs each), and a rerun that only moves the layer slider does no forward pass
at all (the page reuses its result): its cost is shown as the page's AppTest rerun time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz import classify  # noqa: E402
from cnnviz.images import sample_image  # noqa: E402


def classifier(key: str) -> classify.Classifier:
    if key == "bundled":
        return classify.load_bundled()
    from torchvision.models import get_model

    spec = classify.PRETRAINED[key]
    return classify.Classifier(key, spec.title, get_model(key, weights=None).eval(), spec.classes,
                               classify.Recipe.from_weights(spec.weights), "random weights")


def fastest_ms(fn, runs: int) -> float:
    """The fastest of `runs` calls: on a shared machine, slower runs measure other programs
    (a 0.3 ms forward pass sometimes waits 200 ms for its second thread to be scheduled)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1000


def page_rerun_ms() -> tuple[float, float]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=120)
    at.switch_page("pages/7_Classify_an_image.py")
    at.query_params["img"] = "Coffee"
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    times = []
    for layer in (2, 3, 1, 2, 3):
        start = time.perf_counter()
        at.slider[0].set_value(layer).run()
        times.append(time.perf_counter() - start)
    assert not at.exception
    return first * 1000, statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["bundled", "resnet18", "vgg16"])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    photo = sample_image("Cat")
    failures = 0
    for key in args.models:
        clf = classifier(key)
        prepared = classify.prepare(photo, clf.recipe)
        classify.predict(clf, prepared.tensor)  # warm up
        prep = fastest_ms(lambda: classify.prepare(photo, clf.recipe), args.runs)
        recorded = fastest_ms(lambda: classify.predict(clf, prepared.tensor, repeats=0), args.runs)
        batch = prepared.tensor[None]
        with torch.inference_mode():
            plain = fastest_ms(lambda: clf.model(batch), args.runs)
        prediction = classify.predict(clf, prepared.tensor)
        maps_mb = sum(a.maps.numel() for a in prediction.activations) * 4 / 1e6
        ratio = recorded / plain
        met = recorded <= max(2 * plain, plain + 5)
        failures += not met
        print(f"{clf.title:<45} input {'x'.join(map(str, prepared.tensor.shape)):>9}  "
              f"prepare {prep:7.1f} ms  forward {plain:8.1f} ms  recorded {recorded:8.1f} ms "
              f"({ratio:.2f}x)  {len(prediction.activations):2d} conv layers, maps {maps_mb:6.1f} MB")
    print(f"recording costs <= 2x a plain forward pass or +5 ms: {'met' if not failures else 'NOT met'} "
          f"({failures} of {len(args.models)} models over)")
    first, rerun = page_rerun_ms()
    print(f"page (bundled model, AppTest wall time): first run {first:.0f} ms, layer-slider rerun "
          f"{rerun:.0f} ms median of 5 (no forward pass: the result is reused)")


if __name__ == "__main__":
    main()
