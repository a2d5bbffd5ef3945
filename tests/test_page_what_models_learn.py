"""The "What models learn" page through Streamlit's AppTest: it shows exactly what the engine
computes, keeps its state in the URL (also when the student switches views), explains missing
data instead of failing, and never shows the server's folders."""

from __future__ import annotations

import json

import pytest
import torch
from streamlit.testing.v1 import AppTest

from apptest_helpers import open_page
from cnnviz import data, learn
from cnnviz.notation import number, term

PAGE = "pages/4_What_models_learn.py"


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """An empty data folder, no Debian files and an empty torch cache: what a fresh machine has."""
    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")


def run_page(**query) -> AppTest:
    return open_page(PAGE, timeout=120, **query)


def text_of(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def chart_texts(chart: dict) -> list[str]:
    return [a["text"] for a in chart["layout"].get("annotations", [])]


def query(at: AppTest, key: str):
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def everything_shown(at: AppTest) -> str:
    """Every text the page sends the browser: elements, labels, help, captions, chart JSON."""
    return "\n".join(str(getattr(node, "proto", "")) for node in walk(at._tree))


def walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def bundled():
    return (data.load_images("fashion-mnist", "train", source="bundled"),
            data.load_images("fashion-mnist", "test", source="bundled"))


def test_data_browser_shows_the_bundled_subset_by_class():
    at = run_page()
    text = text_of(at)
    assert "Fashion-MNIST: 6,000 training and 1,000 test images" in [s.value for s in at.subheader]
    assert "Loaded from: **bundled subset**" in text
    m = metrics(at)
    assert m["Image size"] == "28×28×1" and m["Numbers per image"] == "784" and m["Classes"] == "10"
    grid = charts(at)[0]
    assert chart_texts(grid) == data.FASHION_CLASSES  # one row per class, labelled
    assert "600 T-shirt/top" in text
    table = at.dataframe[0].value
    assert table["flattened length"].tolist() == [784, 784, 3072]
    assert table["image"].tolist() == ["28×28×1", "28×28×1", "32×32×3"]


def test_linear_view_shows_the_engines_templates_and_scores():
    at = run_page(view="linear", lin_ep="3", img="7")
    train, test = bundled()
    expected = learn.train_linear(train, test, epochs=3, seed=0)
    assert metrics(at)["Test accuracy"] == f"{expected.test_accuracy:.1%}"
    assert metrics(at)["Parameters"] == "7,850"
    templates = charts(at)[0]
    assert chart_texts(templates) == data.FASHION_CLASSES
    match = learn.template_match(expected, test.images[7])
    p = match.predicted
    assert (f"The **{data.FASHION_CLASSES[p]}** template matches best: score = wᵀx + b = "
            f"{number(match.dots[p], 2)} + {term(match.bias[p], 2)} = **{number(match.scores[p], 2)}**") \
        in text_of(at)
    bars = charts(at)[1]["data"][0]
    assert bars["x"] == pytest.approx(match.scores.tolist(), abs=1e-4)


def test_picking_images_updates_the_scores_and_the_url():
    at = run_page(view="linear", lin_ep="2")
    at.selectbox(key="learn.of_class").select("Bag").run()
    assert not at.exception
    index = int(query(at, "img"))
    _, test = bundled()
    assert data.FASHION_CLASSES[int(test.labels[index])] == "Bag"
    assert at.get("image")[0].proto.imgs[0].caption == f"Test image {index}: Bag (28×28×1)"
    at.selectbox(key="learn.of_class").select("Bag").run()  # again: the next bag
    later = int(query(at, "img"))
    assert later > index and data.FASHION_CLASSES[int(test.labels[later])] == "Bag"
    assert int((test.labels[index + 1:later] == 8).sum()) == 0
    before = later
    next(b for b in at.button if b.label == "Random test image").click().run()
    assert not at.exception and int(query(at, "img")) != before


def test_mlp_view_draws_k1_templates():
    at = run_page(view="mlp", k1="8", mlp_ep="2")
    grid = charts(at)[0]
    assert chart_texts(grid) == [f"unit {j}" for j in range(1, 9)]
    assert len(grid["layout"]["shapes"]) == 5  # the most active units are framed
    assert metrics(at)["Parameters"] == f"{784 * 8 + 8 + 8 * 10 + 10:,}"


def test_cnn_view_filters_maps_and_how_to_get_alexnet():
    at = run_page(view="cnn", cnn_ep="1", n="1000")
    filters, maps = charts(at)[:2]
    assert chart_texts(filters) == [f"filter {j}" for j in range(1, 17)]
    assert "(28×28)" in maps["layout"]["title"]["text"]
    info = "\n".join(i.value for i in at.info)
    assert "IMAGENET1K_V1" in info and "not in torch's cache" in info
    # what the student sees, said as it is: the lecture's oriented edges are AlexNet's
    text = text_of(at)
    assert "What they learned here: **blobs, bars and edges**" in text
    assert "started as tiny random numbers, so all you see was learned" in text
    assert "Trained on photos, first-layer filters often become **oriented edges and simple shapes**, " \
           "like AlexNet's below" in text
    # the lecture's 96 filters against torchvision's 64, explained even without the weights
    assert "**96 filters**, trained as two halves of 48 on two GPUs" in text_of(at)
    assert "**64 filters** of the same 11×11×3 = 363 weights" in text_of(at)


def test_cnn_view_shows_alexnet_filters_when_cached(tmp_path):
    path = learn.alexnet_weights_file()
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.randn(64, 3, 11, 11)}, path)
    at = run_page(view="cnn", cnn_ep="1", n="1000")
    titles = [c["layout"].get("title", {}).get("text", "") for c in charts(at)]
    assert any("torchvision's AlexNet (ImageNet): the 64 first-layer filters" in t for t in titles)
    assert not at.info
    assert str(path.parent) not in everything_shown(at)


def test_the_readmes_link_shows_what_the_readme_promises():
    """README: "`/What_models_learn?view=linear&src=bundled&img=25` — ... why the Trouser template wins"."""
    import re
    from urllib.parse import parse_qsl

    readme = (data.ROOT / "README.md").read_text()
    link, image = re.search(r"`/What_models_learn\?([^`]+)` — the linear model's templates, and why the\s+"
                            r"Trouser template wins for test image (\d+)", readme).groups()
    query_ = dict(parse_qsl(link))
    assert query_["img"] == image and query_["view"] == "linear"
    at = run_page(**query_)
    assert f"Test image {image}: Trouser" in at.get("image")[0].proto.imgs[0].caption
    assert "The **Trouser** template matches best" in text_of(at) and "(correct)" in text_of(at)


def test_side_by_side_compares_three_models():
    at = run_page(view="compare", n="1000", cnn_ep="1", lin_ep="2", mlp_ep="2", k1="8")
    table = at.dataframe[0].value
    assert table["model"].tolist() == ["Linear classifier", "MLP (one hidden layer)", "Small CNN"]
    assert table["parameters"].tolist() == [7850, 784 * 8 + 8 + 90, 10586]


def test_bad_link_values_are_explained_not_crashed_on():
    at = run_page(view="bogus", n="5", img="abc")
    warnings = "\n".join(w.value for w in at.warning)
    assert "view='bogus'" in warnings and "n='5'" in warnings and "img='abc'" in warnings
    assert "Fashion-MNIST: 6,000 training and 1,000 test images" in [s.value for s in at.subheader]


def test_image_number_beyond_the_test_set_is_clamped():
    at = run_page(view="linear", lin_ep="1", img="5000")
    assert any("has 1,000 images; showing image 999" in w.value for w in at.warning)


def test_missing_mnist_says_what_to_do_and_offers_the_bundled_data():
    at = run_page(ds="mnist")
    error = at.error[0].value
    assert "MNIST is not available" in error and "MNIST/raw" in error and "download" in error
    labels = [b.label for b in at.button]
    assert "Download MNIST" in labels and "press *Download MNIST*" in error
    next(b for b in at.button if b.label == "Use the bundled Fashion-MNIST subset instead").click().run()
    assert not at.exception and not at.error
    assert query(at, "src") == "bundled"


def test_download_button_fetches_mnist_with_progress(monkeypatch, tmp_path):
    """The download path end to end, with file:// addresses standing in for MNIST's mirrors."""
    import torchvision.datasets as tvd

    from test_data import md5, write_idx_folder

    server = tmp_path / "server"
    written = write_idx_folder(server, gz=True, seed=4)
    monkeypatch.setattr(tvd.MNIST, "mirrors", [server.as_uri() + "/"])
    monkeypatch.setattr(tvd.MNIST, "resources", [(f, md5(server / f)) for f, _ in tvd.MNIST.resources])
    at = run_page(ds="mnist")
    assert at.error
    next(b for b in at.button if b.label == "Download MNIST").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["MNIST downloaded to the server's data folder."]
    assert "MNIST: 12 training and 7 test images" in [s.value for s in at.subheader]
    assert (tmp_path / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert written["train"][0].shape == (12, 28, 28)


def test_download_failure_is_a_message(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.MNIST, "mirrors", [(tmp_path / "offline").as_uri() + "/"])
    at = run_page(ds="mnist")
    next(b for b in at.button if b.label == "Download MNIST").click().run()
    assert not at.exception
    assert any("**The download did not work.**" in e.value and "Are you online?" in e.value for e in at.error)


def test_cifar10_colour_templates_and_filters(monkeypatch, tmp_path):
    """CIFAR-10 (generated files in the real format) gives 32x32x3 templates and 5x5x3 filters."""
    from test_data import accept_written_cifar, write_cifar

    root = tmp_path / "data"
    write_cifar(root, per_batch=20)
    accept_written_cifar(monkeypatch, root)
    at = run_page(ds="cifar10", view="linear", lin_ep="1")
    assert metrics(at)["Parameters"] == "30,730"  # W is 10 x 3072, as in the lecture
    assert chart_texts(charts(at)[0]) == data.CIFAR10_CLASSES
    assert "Flatten each 32×32×3 image to a vector **x** of 3,072 numbers" in text_of(at)
    at = run_page(ds="cifar10", view="cnn", cnn_ep="1")
    assert "(5×5×3)" in charts(at)[0]["layout"]["title"]["text"]
    # and a Fashion-MNIST page now points to the lecture's CIFAR-10 pictures
    at = run_page(view="linear", lin_ep="1")
    assert any("[see them for CIFAR-10](?view=linear&ds=cifar10)" in i.value for i in at.info)


# ---- the server's data folder: one cache, a server setting, never shown ---------------------

def test_the_data_folder_is_no_widget_and_its_path_is_never_shown(tmp_path):
    at = run_page()
    # no box to point the server at any of its folders (the one box is the Your turn answer's)
    assert [box.key for box in at.text_input] == ["yt.own.answer.learn-template.1"]
    shown = everything_shown(at)
    assert str(tmp_path) not in shown and str(data.ROOT) not in shown
    at = run_page(ds="mnist")
    error = at.error[0].value
    assert "MNIST is not in the server's data folder" in error and "CNNVIZ_DATA" in error
    assert str(tmp_path) not in everything_shown(at)


def test_a_failed_download_shows_no_server_path(monkeypatch, tmp_path):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])  # the discard port: refused at once
    at = run_page(ds="mnist")
    next(b for b in at.button if b.label == "Download MNIST").click().run()
    assert any("Are you online?" in e.value for e in at.error)
    assert str(tmp_path) not in everything_shown(at)


def test_the_learn_and_training_pages_share_one_copy_of_the_images(monkeypatch):
    """Each split is read from disk once per server process, whichever page asks first."""
    import streamlit as st

    st.cache_resource.clear()  # what an earlier test loaded would hide a second read
    reads = []
    read_idx = data.read_idx
    monkeypatch.setattr(data, "read_idx", lambda path, *args: reads.append(path) or read_idx(path, *args))
    run_page()
    assert len(reads) == 4  # images and labels of the two splits
    open_page("pages/5_Train_a_CNN.py")  # the bundled Fashion-MNIST subset, as here
    run_page(src="bundled")  # "auto" and "bundled" are the same images here: read once
    assert len(reads) == 4


# ---- switching views keeps every setting ---------------------------------------------------

def shown_by_browser(slider) -> int:
    """The value the browser draws for a slider that appears: the value the server sends with it,
    or else the slider's own default, its minimum (the browser forgets the values of widgets it
    stopped drawing). The browser sends this value back with the next rerun."""
    proto = slider.proto
    return int((proto.value if proto.set_value else proto.default)[0])


def switch_view(at: AppTest, view: str) -> dict[str, int]:
    """Click a view, as in the browser: the sliders it draws, as the browser shows them."""
    at.segmented_control(key="learn.view").set_value(view).run()
    assert not at.exception
    shown = {}
    for slider in at.slider:
        shown[slider.key] = shown_by_browser(slider)
        slider.set_value(shown[slider.key])  # what the browser will send back
    return shown


def test_switching_views_keeps_the_sliders_the_url_and_the_models():
    at = run_page(view="linear", lin_ep="3", n="1000")
    assert switch_view(at, "mlp") == {"learn.k1": learn.MLP_HIDDEN, "learn.mlp_ep": 10}
    assert switch_view(at, "cnn") == {"learn.cnn_ep": learn.DEFAULTS["cnn"]["epochs"]}
    assert "k1" not in at.query_params and "mlp_ep" not in at.query_params  # still the defaults
    switch_view(at, "compare")
    assert "cnn_ep" not in at.query_params
    history = charts(at)[1]  # test accuracy after each epoch, per model
    # trained as set, not with the sliders' minimums
    assert [len(line["x"]) for line in history["data"]] == [3, 10, learn.DEFAULTS["cnn"]["epochs"]]
    assert switch_view(at, "linear") == {"learn.lin_ep": 3}
    assert query(at, "lin_ep") == "3" and query(at, "view") == "linear" and query(at, "n") == "1000"
    assert metrics(at)["Training images"] == "1,000"


# ---- a thin page ---------------------------------------------------------------------------

def test_every_chart_goes_through_the_shared_chart_helper(monkeypatch):
    import ui.show

    drawn = []
    chart = ui.show.chart

    def counted(figure, **kwargs):
        drawn.append(kwargs["key"])
        chart(figure, **kwargs)

    monkeypatch.setattr(ui.show, "chart", counted)
    at = run_page(view="compare", n="1000", cnn_ep="1", lin_ep="1", mlp_ep="1", k1="8")
    assert len(drawn) == len(at.get("plotly_chart")) == 6  # the page's 5 and its Your turn question's
    source = (data.ROOT / PAGE).read_text()
    assert "st.plotly_chart" not in source and "cache_resource" not in source and "import torch" not in source
