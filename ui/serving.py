"""What the server does besides running pages: warm up once at start, and answer a few HTTP routes.

Used by app.py (`st.App(..., lifespan=lifespan, routes=ROUTES)`).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from streamlit.logger import get_logger

from cnnviz.links import LINKS
from ui.room_routes import ROOMS, room_routes

LOG = get_logger("cnnviz")


def warm_up() -> float:
    """Import what every page needs and load what all sessions share, once per process; returns seconds.

    A page's first visit otherwise pays for importing torch and torchvision and for reading data and
    models (seconds each); done here, before the server answers, every first visit is fast.
    """
    start = time.perf_counter()
    import torch  # noqa: F401
    import torchvision  # noqa: F401

    from cnnviz import classify, conv, figures, learn, network, pooling, summary, train  # noqa: F401
    from ui import datasets, stack, training, upload

    summary.summarize("vgg16", 224)  # builds VGG-16 on the meta device once (the explorer's default)
    datasets.image_sets("fashion-mnist", "bundled")  # the training page's default data
    datasets.image_sets("fashion-mnist", "auto")  # the learn page's default data
    upload.bundled_model()  # the classify page's default model
    stack.growth(network.LECTURE_STACK, network.INPUT_CHOICES["28"][0])
    training.warm_up()
    return time.perf_counter() - start


@asynccontextmanager
async def lifespan(app):
    seconds = await asyncio.to_thread(warm_up)
    LOG.info("cnnviz warmed up in %.1f s", seconds)
    yield


async def short_link(request: Request) -> Response:
    """/s/<code> → the state it stands for (cnnviz.links); an unknown code → the home page, which says so."""
    target = LINKS.resolve(request.path_params["code"])
    return RedirectResponse(target or "/?link=unknown", status_code=302)


ROUTES: list[Route] = [
    Route("/s/{code}", short_link),
    *room_routes(ROOMS),  # presenter rooms: /api/rooms/<code>, /r/<code>
]
