"""The home page is the lecture's map: every lesson once, in lecture order, linked when it exists."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.lessons import LESSONS

ROOT = Path(__file__).resolve().parent.parent


def test_home_lists_every_lesson_in_order_and_links_the_built_ones():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    text = "\n".join(m.value for m in at.markdown)
    links = [link.proto.label for link in at.get("page_link")]
    positions = []
    for number, lesson in enumerate(LESSONS, start=1):
        label = f"{number}. {lesson.title}"
        if lesson.path.exists():
            assert label in links
            positions.append(links.index(label))
        else:
            assert f"**{label}** · *in preparation*" in text
        assert lesson.teaches in text
    assert positions == sorted(positions)
    assert (ROOT / "pages" / "1_Convolution.py").exists()  # the first lesson is always built
