"""The lecture tour: the lecture's worked examples in slide order, across the app's pages.

A lecturer gives the lecture from cnnviz by stepping through TOUR with → and ← (or a clicker's
Page Down / Page Up): each stop is one page, opened with the settings of that example, and the
part of the page that shows it (`section`), which the presenter view fills the screen with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode


@dataclass(frozen=True)
class Stop:
    title: str  # what the hall sees in the presenter bar
    slide: str  # the lecture's slide it follows
    page: str  # file under pages/
    query: dict[str, str] = field(default_factory=dict)  # the page's own link parameters for this example
    section: str = ""  # the part of the page the presenter view shows ("" = the page's main figure)

    @property
    def path(self) -> str:
        """The URL path Streamlit gives a pages/ file: its name without the number prefix."""
        return "/" + self.page.split("_", 1)[1].removesuffix(".py")


TOUR: tuple[Stop, ...] = (
    Stop("A convolution with zero padding", "Convolution: Example (4 × 4 × 1 image padded with zeros)",
         "1_Convolution.py"),
    Stop("The same without padding", "Convolution: Example (border effects: k − 1 smaller)", "1_Convolution.py",
         {"ex": "no-padding"}),
    Stop("Two input channels", "Convolution: Example with 2 input channels", "1_Convolution.py",
         {"ex": "two-channels"}),
    Stop("Two filters, two output channels", "Convolution Layer: more than one filter", "1_Convolution.py",
         {"ex": "two-filters"}),
    Stop("Local connectivity and parameter sharing", "Convolution Layers: Graph Representation",
         "1_Convolution.py", section="graph"),
    Stop("What a convolution layer costs", "Convolution Layers: Parameters and Compute Operations",
         "1_Convolution.py", {"ex": "two-filters"}, section="costs"),
    Stop("Max pooling", "Pooling Layers: max-pooling with kernel size 2×2, stride 2", "2_Pooling.py"),
    Stop("Mean pooling", "Pooling Layers: max or mean", "2_Pooling.py", {"kind": "mean"}),
    Stop("Strided convolution", "Alternative to Pooling: Strided Convolutions", "2_Pooling.py", section="strided"),
    Stop("Flattening versus global average pooling", "Flattening, Global Average Pooling", "2_Pooling.py",
         section="flatten"),
    Stop("Class templates of a linear model", "What Do Linear Models Learn?", "4_What_models_learn.py",
         {"view": "linear"}),
    Stop("The VGG-16 walk-through", "Example: VGG Architecture", "6_VGG16_explorer.py"),
    Stop("Softmax: scores become probabilities", "Example: VGG Architecture (softmax), CNN as Nested Function",
         "7_Classify_an_image.py"),
    # The lecture ends with training: one step of gradient descent, on the convolution lab's layer.
    Stop("One step of gradient descent", "Training by Stochastic Gradient Descent", "1_Convolution.py",
         section="sgd"),
)


def stop_query(index: int, **app_params: str) -> dict[str, str]:
    """The query parameters that open stop `index`: the example's own, the stop number, and app-wide ones
    (present, room) passed by the caller."""
    return {**TOUR[index].query, "stop": str(index + 1), **app_params}


def stop_link(index: int, **app_params: str) -> str:
    """'/Pooling?kind=mean&stop=7&present=1': a relative link to stop `index` (0-based)."""
    return f"{TOUR[index].path}?{urlencode(stop_query(index, **app_params))}"


def neighbour(index: int | None, direction: int) -> int | None:
    """The stop after (direction +1) or before (−1) stop `index`; None past either end. Without a
    current stop, 'next' starts the tour."""
    if index is None:
        return 0 if direction > 0 else None
    target = index + direction
    return target if 0 <= target < len(TOUR) else None
