"""The served app's settings: what visitors of a shared server may see, and limits that agree."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())


def test_visitors_see_no_tracebacks():
    # "full" and "stacktrace" show server paths and code to everyone; the tests turn them on themselves.
    assert CONFIG["client"]["showErrorDetails"] in ("none", "type")


def test_the_browser_tab_needs_no_font_cdn_and_no_usage_stats():
    assert CONFIG["browser"]["gatherUsageStats"] is False
