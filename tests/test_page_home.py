"""The home page is the lecture's map: every lesson once, in lecture order, each a link to its page."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.lessons import APP_ICON, LESSONS

ROOT = Path(__file__).resolve().parent.parent


def test_home_lists_every_lesson_in_order_and_links_it():
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    text = "\n".join(m.value for m in at.markdown)
    links = [link.proto.label for link in at.get("page_link")]
    positions = []
    for number, lesson in enumerate(LESSONS, start=1):
        assert (ROOT / lesson.path).is_file(), lesson.path
        label = f"{number}. {lesson.title}"
        assert label in links
        positions.append(links.index(label))
        assert lesson.teaches in text
    assert positions == sorted(positions)
    assert sorted(p.name for p in (ROOT / "pages").glob("*.py")) == sorted(lesson.page for lesson in LESSONS)


def test_the_tab_icon_is_served_by_the_app():
    # A ":material/..." page icon makes the browser fetch it from Google's font CDN.
    assert Path(APP_ICON).is_file() and APP_ICON.startswith(str(ROOT / "assets"))
    for script in [ROOT / "home.py", ROOT / "ui" / "lessons.py"]:
        for line in script.read_text().splitlines():
            if "set_page_config" in line:
                assert "page_icon=APP_ICON" in line, line
