"""ui.show.chart sends plain plotly dicts as they are: the browser must get the figure go.Figure would give it."""

from __future__ import annotations

import json

import plotly.graph_objects as go
import torch
from streamlit.testing.v1 import AppTest

from cnnviz.conv import Convolution
from cnnviz.examples import LECTURE_FILTER, LECTURE_INPUT
from cnnviz.figures import feature_map_spec, grid_spec


def _draw_both() -> None:
    import plotly.graph_objects as go
    import streamlit as st
    import torch

    from cnnviz.conv import Convolution
    from cnnviz.examples import LECTURE_FILTER, LECTURE_INPUT
    from cnnviz.figures import feature_map_spec, grid_spec
    from ui.show import chart

    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, padding=1)
    step = conv.step(7)
    gen = torch.Generator().manual_seed(0)
    specs = [grid_spec(conv.padded[0], "input", highlight=(step.rows, step.cols), padding=(1, 1, 1, 1)),
             grid_spec(conv.filled(7)[0], marked=(step.row, step.col)),
             feature_map_spec(torch.randn(20, 30, generator=gen), "map")]
    for i, spec in enumerate(specs):
        chart(spec, key=f"plain.{i}")
        st.plotly_chart(go.Figure(data=spec["data"], layout=spec["layout"]), key=f"figure.{i}",
                        config={"displayModeBar": False})


def _without_template(spec: str) -> dict:
    figure = json.loads(spec)
    figure["layout"].pop("template", None)
    return figure


def test_plain_charts_equal_validated_figures_but_the_default_template():
    at = AppTest.from_function(_draw_both, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("plotly_chart")  # in drawing order: plain, validated, plain, validated, ...
    assert len(charts) == 6
    for plain, validated in zip(charts[0::2], charts[1::2]):
        # Same traces and layout as plotly's own validated to_dict(); only Streamlit's default template
        # (which the browser fills in with its theme anyway) is not repeated in every message.
        assert _without_template(plain.proto.spec) == _without_template(validated.proto.spec)
        assert "template" not in json.loads(plain.proto.spec)["layout"]
        assert plain.proto.config == validated.proto.config == json.dumps({"displayModeBar": False})
        assert len(plain.proto.spec) < len(validated.proto.spec)


def test_chart_dict_is_not_copied_or_changed():
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, padding=1)
    spec = grid_spec(conv.padded[0], "input")
    before = json.dumps(spec, sort_keys=True)
    from ui.show import PlainFigure
    figure = PlainFigure(spec)
    assert isinstance(figure, go.Figure)
    assert figure.to_dict() is spec
    assert json.dumps(spec, sort_keys=True) == before
    assert json.loads(json.dumps(feature_map_spec(torch.zeros(3, 4))))["data"][0]["type"] == "image"


def _selectable() -> None:
    import plotly.graph_objects as go

    from ui.show import chart

    figure = go.Figure(data=[go.Scatter(x=[0, 1], y=[0, 1], mode="markers")])
    chart(figure, key="pick", on_select="rerun", selection_mode="points", width="stretch")
    chart(figure, key="look")


def test_chart_passes_click_selection_through():
    at = AppTest.from_function(_selectable, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    pick, look = at.get("plotly_chart")
    assert list(pick.proto.selection_mode) == [pick.proto.SelectionMode.POINTS]
    assert "pick" in at.session_state  # a widget: its selection comes back to the script
    assert list(look.proto.selection_mode) == [] and "look" not in at.session_state
