"""Small plotly charts of counts: pure functions from engine results to figures."""

from __future__ import annotations

import plotly.graph_objects as go

from .pooling import HeadCounts

FLATTEN_COLOUR = "#b91c1c"  # red: the expensive head
GAP_COLOUR = "#1f6feb"  # the theme's blue


def head_params_figure(counts: HeadCounts, height_px: int = 340) -> go.Figure:
    """Two bars: parameters of the fully connected layer after flattening versus after global average pooling."""
    labels = [f"Flatten → FC<br>({counts.flat_features:,} inputs)", f"Global average pooling → FC<br>({counts.channels:,} inputs)"]
    values = [counts.flatten_params, counts.gap_params]
    bars = go.Bar(x=labels, y=values, text=[f"{v:,}" for v in values], textposition="outside",
                  marker_color=[FLATTEN_COLOUR, GAP_COLOUR], cliponaxis=False,
                  hovertemplate="%{x}: %{y:,} parameters<extra></extra>", textfont={"size": 16})
    layout = go.Layout(
        title={"text": f"Parameters of the first fully connected layer ({counts.units:,} units)",
               "x": 0.5, "xanchor": "center", "font": {"size": 15}},
        height=height_px, margin={"l": 10, "r": 10, "t": 50, "b": 10},
        yaxis={"title": {"text": "parameters"}, "rangemode": "tozero", "range": [0, max(values) * 1.18],
               "tickformat": ",d" if max(values) < 1e6 else "~s"},
        xaxis={"tickfont": {"size": 13}}, plot_bgcolor="white", paper_bgcolor="rgba(0,0,0,0)",
        showlegend=False, bargap=0.45,
    )
    return go.Figure(data=[bars], layout=layout)
