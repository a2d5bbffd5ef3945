import io

import numpy as np
"""Figures of a layer stack: their numbers are the engine's, the boxes are the receptive fields."""

import torch
from PIL import Image

from cnnviz.images import sample_image
from cnnviz.network import STACK_PRESETS, analyse, build_model, parse_stack, unit_receptive_field
from cnnviz.network_figures import (centre_unit, fit_picture, growth_pictures, lecture_shape,
                                    receptive_field_figure, shapes_figure)

LECTURE_STYLE = STACK_PRESETS["Lecture-style: conv, pool, repeat"].stack


def test_lecture_shape_is_m_by_l_by_d():
    assert lecture_shape((64, 224, 224)) == "224×224×64"
    assert lecture_shape((25088,)) == "25,088"


def test_shapes_figure_shows_space_shrinking_and_channels_growing():
    infos = analyse(parse_stack(LECTURE_STYLE), (1, 28, 28))
    figure = shapes_figure(infos)
    bars, line = figure.data  # heights on top, channels below: two panels, nothing drawn over a label
    # The input, then every conv and pooling layer, with the shapes torch computes.
    model = build_model(LECTURE_STYLE, (1, 28, 28))
    x = torch.zeros(1, 1, 28, 28)
    expected_sides, expected_channels = [28], [1]
    for module in model:
        x = module(x)
        if isinstance(module, (torch.nn.Conv2d, torch.nn.MaxPool2d)):
            expected_sides.append(x.shape[2])
            expected_channels.append(x.shape[1])
    assert list(bars.y) == expected_sides == [28, 28, 14, 14, 7, 7, 3]
    assert list(line.y) == expected_channels == [1, 16, 16, 32, 32, 64, 64]
    assert bars.text[-1] == "3×3×64"
    assert figure.layout.yaxis.domain[0] > figure.layout.yaxis2.domain[1]  # the panels do not overlap
    assert figure.layout.yaxis2.range[1] > max(line.y) and figure.layout.yaxis2.tickformat == ",d"
    assert figure.layout.yaxis2.nticks == 5  # round ticks, not 66/131/197/263


def test_receptive_field_figure_draws_the_box_on_the_picture():
    picture = Image.new("RGB", (28, 20), "white")
    figure = receptive_field_figure(picture, (2, 5, 9, 14), "unit")
    (rect,) = figure.layout.shapes
    assert (rect.x0, rect.x1, rect.y0, rect.y1) == (4.5, 14.5, 1.5, 9.5)
    assert figure.data[0].source.startswith("data:image/png;base64,")
    assert figure.layout.yaxis.range == (19.5, -0.5)  # row 0 at the top


def test_growth_pictures_follow_the_centre_units_field():
    infos = analyse(parse_stack(LECTURE_STYLE), (1, 28, 28))
    picture = fit_picture(sample_image("Cat").image, (1, 28, 28))
    assert picture.size == (28, 28)
    pictures = growth_pictures(infos, picture, side_px=168)  # 6 screen pixels per input pixel
    layers = [i for i in infos if i.kind in ("conv", "maxpool")]
    assert len(pictures) == len(layers) == 6
    sizes = []
    for (caption, png), info in zip(pictures, layers):
        box = unit_receptive_field(infos, None, info.index, *centre_unit(info))
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        amber = (np.abs(pixels - [245, 158, 11]).sum(axis=2) < 40)
        rows, cols = np.nonzero(amber)
        top, left, bottom, right = box
        # the outline is drawn exactly around the field's input pixels
        assert (rows.min(), cols.min(), rows.max(), cols.max()) == (top * 6, left * 6, bottom * 6 + 5, right * 6 + 5)
        sizes.append(bottom - top + 1)
        assert caption.endswith(f"sees {sizes[-1]}×{sizes[-1]}")
    assert sizes == sorted(sizes) and sizes[0] == 3 and sizes[-1] > 20  # higher layers see more


def test_fit_picture_makes_the_networks_input():
    photo = sample_image("Coffee").image
    grey = fit_picture(photo, (1, 32, 48))
    colour = fit_picture(photo, (3, 32, 32))
    assert grey.size == (48, 32) and colour.size == (32, 32)
    r, g, b = grey.split()
    assert r.tobytes() == g.tobytes() == b.tobytes()  # grey for one channel


def test_layer_rows_are_the_engines_numbers_in_the_lectures_shapes():
    from cnnviz.network_figures import layer_rows
    infos = analyse(parse_stack("conv3x8,relu,maxpool2,gap,fc10"), (1, 28, 28))
    rows = layer_rows(infos, receptive_field=True)
    model = build_model("conv3x8,relu,maxpool2,gap,fc10", (1, 28, 28))
    assert [r["#"] for r in rows] == list(range(6))
    assert [r["output m×l×d"] for r in rows] == ["28×28×1", "28×28×8", "28×28×8", "14×14×8", "8", "10"]
    assert sum(r["parameters"] for r in rows) == sum(p.numel() for p in model.parameters())
    assert [r["receptive field"] for r in rows] == ["1×1", "3×3", "3×3", "4×4", "whole input", "whole input"]
    assert "receptive field" not in layer_rows(infos)[0]
