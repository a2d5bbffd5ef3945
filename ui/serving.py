"""What the server does besides running pages: warm up once at start, and answer a few HTTP routes.

Used by app.py (`st.App(..., lifespan=lifespan, routes=ROUTES)`).
"""

from __future__ import annotations

import asyncio
import os
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
    import torch
    import torchvision  # noqa: F401

    one_torch_thread(torch)

    from cnnviz import classify, conv, figures, learn, network, pooling, summary, train  # noqa: F401
    from ui import datasets, stack, training, upload

    summary.summarize("vgg16", 224)  # builds VGG-16 on the meta device once (the explorer's default)
    datasets.image_sets("fashion-mnist", "bundled")  # the training page's default data
    datasets.image_sets("fashion-mnist", "auto")  # the learn page's default data
    upload.bundled_model()  # the classify page's default model
    stack.growth(network.LECTURE_STACK, network.INPUT_CHOICES["28"][0])
    training.warm_up()
    return time.perf_counter() - start


def one_torch_thread(torch) -> None:
    """torch's operators on one thread in the server process, unless OMP_NUM_THREADS says otherwise.

    The server runs many sessions' scripts at once, each with small tensors; a team of intra-op threads
    only adds its waiting: the second thread spins until its share is scheduled, and that spinning is
    CPU the hall does not get. Measured on 2 shared cores (benchmarks/first_run_cpu.py, two rounds,
    load 3-4): a first run of the classify page 290 and 102 ms of server CPU on two threads, 80 and
    70 ms on one; the learn page 56 and 41 ms, 32 and 26 ms. The price: one big forward pass for a
    lone user on an idle machine takes twice the wall time (VGG-16: 120 → 235 ms; under load, two
    threads are slower still: ResNet-18 106 ms against 32 ms). torch's setting is the process's, so
    every session's script thread has it; training runs have their own processes (cnnviz.worker).
    """
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


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
