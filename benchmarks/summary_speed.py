"""How fast the architecture summary is: cnnviz.summary (meta device) against torchinfo on a
real VGG-16, in one run, printed as a ratio.

    python benchmarks/summary_speed.py [--model vgg16] [--input 224] [--repeat 50]

Goals (issue 4): warm analysis of VGG-16 at 224×224 <= 10 ms, and >= 50x faster than
torchinfo on the model with real weights.

What is cached, honestly: `cnnviz.summary.meta_model` keeps the architecture built on the meta
device, once per model name (no weights, ~20 ms to build). Every `summarize` call traces that
structure afresh for the requested input size (hooks, a meta forward pass, the counts), so
"warm" is: structure cached, analysis not. "Cold" is the first call in a process, building
the meta model (reported with and without importing torchvision).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vgg16")
    parser.add_argument("--input", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=50, help="warm runs of cnnviz.summary")
    parser.add_argument("--torchinfo-repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    import torch  # noqa: F401  (imported first so that it is not counted below)
    torch_import = time.perf_counter() - start

    from cnnviz import summary as S

    size, key = args.input, args.model
    start = time.perf_counter()
    first = S.summarize(key, size)
    cold_with_import = time.perf_counter() - start
    S.meta_model.cache_clear()
    rss0 = rss_mb()
    start = time.perf_counter()
    S.summarize(key, size)
    cold = time.perf_counter() - start
    rss_meta = rss_mb() - rss0

    warm = timed(lambda: S.summarize(key, size), args.repeat)

    import torchinfo
    import torchvision

    rss1 = rss_mb()
    start = time.perf_counter()
    model = getattr(torchvision.models, S.TORCHVISION_MODELS[key].constructor)(weights=None).eval()
    build_real = time.perf_counter() - start
    rss_real = rss_mb() - rss1
    stats = None

    def run_torchinfo():
        nonlocal stats
        stats = torchinfo.summary(model, input_size=(1, 3, size, size), verbose=0, device="cpu")

    real = timed(run_torchinfo, args.torchinfo_repeat)
    same = (stats.total_params, stats.total_mult_adds) == (first.params, first.macs)

    warm_median, warm_min = statistics.median(warm), min(warm)
    real_median = statistics.median(real)
    ratio = real_median / warm_median
    ms = 1000
    print(f"{first.title} at {size}x{size}: {first.params:,} parameters, {first.macs:,} multiply-adds "
          f"({len(first.layers)} layers); torchinfo agrees on both totals: {same}")
    print(f"import torch                          {torch_import * ms:9.1f} ms (not counted below)")
    print(f"cnnviz cold, incl. import torchvision {cold_with_import * ms:9.1f} ms")
    print(f"cnnviz cold (build meta model + trace){cold * ms:9.1f} ms   memory +{rss_meta:.0f} MB")
    print(f"cnnviz warm (meta model cached)       {warm_median * ms:9.2f} ms median, {warm_min * ms:.2f} ms min "
          f"of {len(warm)}")
    print(f"torchvision real model, build         {build_real * ms:9.1f} ms   memory +{rss_real:.0f} MB")
    print(f"torchinfo.summary on the real model   {real_median * ms:9.1f} ms median of {len(real)}")
    print(f"ratio torchinfo / cnnviz warm         {ratio:9.0f}x   (goal >= 50x: {'met' if ratio >= 50 else 'NOT met'})")
    print(f"ratio (torchinfo + build) / cnnviz cold {(real_median + build_real) / cold:7.0f}x")
    print(f"warm <= 10 ms: {'met' if warm_median <= 0.010 else 'NOT met'} (median {warm_median * ms:.2f} ms)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
