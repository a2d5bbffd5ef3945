"""The lecture's map: one entry per lesson page, in lecture order.

The home page and every page's header read this list, so a page's title, its place in
the lecture and its one-line summary are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from ui import presenter
from ui.exercises import hall_question
from ui.room import lecture_hall
from ui.training import publish_finished_run

ROOT = Path(__file__).resolve().parent.parent
# The browser tab's icon, served by the app: a Material icon there is fetched from Google's font
# CDN by every browser (and fails quietly offline). The in-page Material icons ship with Streamlit.
APP_ICON = str(ROOT / "assets" / "icons" / "cnnviz.png")
PAGE_PATH_KEY = "page.path"  # the URL path of the page this run draws (for its share link)


@dataclass(frozen=True)
class Lesson:
    page: str  # file under pages/
    title: str
    icon: str
    slides: str  # where it sits in the lecture
    teaches: str

    @property
    def path(self) -> str:
        """The page's script, as st.page_link and st.switch_page name it."""
        return f"pages/{self.page}"


LESSONS = [
    Lesson("1_Convolution.py", "Convolution", ":material/grid_on:",
           "Convolution Operation … Convolution Layers: Parameters and Compute Operations",
           "Slide a filter over a grid step by step: padding, stride, dilation, channels, "
           "filters, and what a layer costs in parameters and multiply-adds."),
    Lesson("2_Pooling.py", "Pooling and strides", ":material/filter_center_focus:",
           "Pooling Layers … Global Average Pooling",
           "Max and mean pooling, strided convolution, and flattening versus global average pooling."),
    Lesson("3_Stacking_layers.py", "Stacking layers", ":material/stacks:",
           "Stacking Convolution Layers, Convolutional Neural Networks: Architectures",
           "Build a network layer by layer: shapes shrink, channels grow, and every unit sees a larger "
           "part of the image."),
    Lesson("4_What_models_learn.py", "What models learn", ":material/psychology:",
           "What Do Linear Models / MLPs / CNNs Learn?",
           "Class templates of a linear model, full-image templates of an MLP, and the edges "
           "and blobs in a CNN's first-layer filters."),
    Lesson("5_Train_a_CNN.py", "Train a CNN", ":material/model_training:",
           "Stacking Convolution Layers, Training by Stochastic Gradient Descent",
           "Build a small CNN and train it live, with loss and accuracy curves as it learns."),
    Lesson("6_VGG16_explorer.py", "VGG-16 explorer", ":material/account_tree:",
           "Example: VGG Architecture, CNN as Nested Function",
           "Walk through VGG-16 layer by layer: activation shapes, parameters and FLOPs."),
    Lesson("7_Classify_an_image.py", "Classify an image", ":material/image_search:",
           "Softmax, CNN as Nested Function",
           "Upload a photo and watch a CNN classify it: the softmax and every layer's activation maps."),
]


def sidebar() -> None:
    """Our own navigation (Streamlit's would call the home page 'app'), in lecture order, and the way
    into the presenter view and the lecture tour."""
    with st.sidebar:
        st.page_link("home.py", label="Home: the lecture's map", icon=":material/home:")
        for number, lesson in enumerate(LESSONS, start=1):
            st.page_link(lesson.path, label=f"{number}. {lesson.title}", icon=lesson.icon)
        st.divider()
        st.button("Presenter view", icon=":material/co_present:", on_click=presenter.enter, width="stretch",
                  help="This page's main figure on the whole screen, for a projector; keys ← → step, F is full screen.")
        if st.button("Give the lecture", icon=":material/slideshow:", width="stretch",
                     help="The lecture's worked examples in slide order, in the presenter view: → and ← (or a "
                          "clicker's Page Down / Page Up) move on."):
            st.query_params[presenter.PRESENT] = "1"
            presenter.go_to_stop(0)


def page_setup(page_file: str, stepper_sections: tuple[str, ...] = ()) -> Lesson:
    """Common page configuration; returns the lesson this page is.

    stepper_sections: the sections of the page (see ui.presenter.section) whose main figure is a stepper:
    there ← → step, and the presenter view's tour moves on at the last step."""
    lesson = next(lesson for lesson in LESSONS if lesson.page == page_file)
    presenting = presenter.presenting()
    st.set_page_config(page_title=f"{lesson.title} · cnnviz", page_icon=APP_ICON, layout="wide",
                       initial_sidebar_state="collapsed" if presenting else "auto")
    # A training run that ended while the student was elsewhere becomes the session's model
    # on whichever page they are looking at (the explorer and the classify page use it).
    publish_finished_run()
    st.session_state[PAGE_PATH_KEY] = "/" + page_file.split("_", 1)[1].removesuffix(".py")
    number = LESSONS.index(lesson) + 1
    if presenting:
        presenter.presenter_bar(page_file, f"{number}. {lesson.title}",
                                has_stepper=presenter.section(page_file) in stepper_sections)
    else:
        sidebar()
        st.title(lesson.title)
        st.caption(f"Lecture: *{lesson.slides}*")
    lecture_hall()  # presenter rooms: publish this page to the hall, or follow a room's presenter
    hall_question(page_file)  # a question put to the hall: the presenter view's whole screen, a student's top box
    return lesson
