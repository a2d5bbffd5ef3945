"""The VGG-16 explorer page, driven through Streamlit's AppTest: the lecture's numbers, other
models and sizes, links, and inputs that cannot work."""


from streamlit.testing.v1 import AppTest

from apptest_helpers import open_page
from cnnviz import summary as S
from cnnviz.checkpoint import Checkpoint
from cnnviz.network import STACK_PRESETS, build_model

PAGE = "pages/5_VGG16_explorer.py"


def run_page(session: dict | None = None, **query) -> AppTest:
    return open_page(PAGE, session=session, **query)


def text_of(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def query(at: AppTest, key: str):
    value = at.query_params.get(key)
    return value[0] if isinstance(value, list) else value


def test_opens_on_vgg16_at_224_with_the_lecture_walk_through_and_totals():
    at = run_page()
    expected = S.summarize("vgg16", 224)
    shown = metrics(at)
    assert shown["Parameters"] == "138,357,544" == f"{expected.params:,}"
    assert shown["Multiply-adds"] == f"{expected.macs:,}"
    text = text_of(at)
    for line in S.walkthrough(expected):
        assert line in text
    assert "1. Input: 224×224×3 = 150,528 numbers" in text
    assert "flatten 7×7×512 → 25,088-dimensional vector" in text
    # Against the lecture: both approximations and the explanation of the 132 million.
    assert "132,000,000" in at.dataframe[0].value.to_string() and "16,000,000,000" in at.dataframe[0].value.to_string()
    assert f"{expected.params / 2 ** 20:.1f}" in text and "131.9" in text
    assert f"{expected.share('fc'):.1%}** of the parameters" in text
    assert f"**{expected.share('conv', 'macs'):.1%}** of the multiply-adds" in text
    # The per-layer table.
    table = at.dataframe[-1].value
    assert list(table["parameters"]) == [r.params for r in expected.layers]
    assert list(table["output (H×W×C)"])[:5] == ["224×224×64"] * 4 + ["112×112×64"]
    assert not at.query_params  # defaults stay out of the link


def test_layer_link_shows_that_layers_formulas():
    at = run_page(layer="32")
    text = text_of(at)
    assert "Input **25088** → output **4096**" in text
    assert "n′·(n + 1) = 4096·(25088 + 1) = 102,764,544" in text
    assert "fc1: 74.3% of the parameters" in next(c.value for c in at.caption if c.value.startswith("fc1:"))


def test_other_model_and_input_from_the_link():
    at = run_page(model="vgg11", input="112")
    expected = S.summarize("vgg11", 112)
    assert metrics(at)["Parameters"] == f"{expected.params:,}"
    assert metrics(at)["Multiply-adds"] == f"{expected.macs:,}"
    assert "VGG-11 for a 112×112×3 input" in [h.value for h in at.subheader]
    # The lecture comparison still refers to VGG-16 at 224.
    assert "138,357,544" in at.dataframe[0].value.to_string()


def test_changing_the_model_resets_the_input_and_goes_into_the_url():
    at = run_page(input="300")
    at.selectbox(key="vgg.model").select("resnet18").run()
    assert not at.exception
    assert query(at, "model") == "resnet18"
    assert at.number_input(key="vgg.input").value == 224
    assert metrics(at)["Parameters"] == f"{S.summarize('resnet18', 224).params:,}"
    at.number_input(key="vgg.input").set_value(448).run()
    assert query(at, "input") == "448"
    assert metrics(at)["Multiply-adds"] == f"{S.summarize('resnet18', 448).macs:,}"


def test_too_small_input_gets_a_message_naming_the_layer():
    at = run_page(input="20")
    errors = [e.value for e in at.error]
    assert errors and "pool5" in errors[0] and "32×32" in errors[0]
    next(b for b in at.button if b.label == "Try 32×32, the smallest").click().run()
    assert not at.error and query(at, "input") == "32"
    assert metrics(at)["Multiply-adds"] == f"{S.summarize('vgg16', 32).macs:,}"
    at.number_input(key="vgg.input").set_value(8).run()
    assert "pool4" in at.error[0].value
    next(b for b in at.button if b.label == "Back to 224×224").click().run()
    assert not at.error and metrics(at)["Parameters"] == "138,357,544"


def test_bad_link_values_are_explained_and_ignored():
    at = run_page(model="vgg17", input="many")
    warnings = " ".join(w.value for w in at.warning)
    assert "model='vgg17'" in warnings and "input='many'" in warnings
    assert metrics(at)["Parameters"] == "138,357,544"
    at = run_page(layer="500")
    assert any("layer 501" in w.value for w in at.warning)


def test_the_apps_cnn_without_training_offers_the_default_stack():
    at = run_page(model="cnn")
    assert any("No CNN has been trained" in i.value for i in at.info)
    assert any("untrained" in c.value for c in at.caption)
    stack = STACK_PRESETS["Tiny CNN (Fashion-MNIST)"].stack
    assert metrics(at)["Parameters"] == f"{S.summarize_stack(stack, (1, 28, 28)).params:,}"
    assert any(stack in c.value for c in at.caption)


def test_the_cnn_trained_in_this_session_is_analysed():
    stack, shape = "conv3x4,relu,maxpool2,conv3x6,relu,gap,fc3", (3, 32, 32)
    ckpt = Checkpoint.from_model(build_model(stack, shape), stack, shape, ["a", "b", "c"], "cifar10",
                                 {"test_accuracy": 0.5})
    at = run_page(session={"cnnviz.trained": ckpt}, model="cnn")
    assert not at.info
    expected = S.summarize_stack(stack, shape)
    assert metrics(at)["Parameters"] == f"{expected.params:,}"
    assert at.number_input(key="vgg.input").value == 32
    # gap makes it work at any size; other sizes give other multiply-adds
    at.number_input(key="vgg.input").set_value(64).run()
    assert metrics(at)["Multiply-adds"] == f"{S.summarize_stack(stack, (3, 64, 64)).macs:,}"
