"""The VGG-16 explorer page, driven through Streamlit's AppTest: the lecture's numbers, other
models and sizes, links, and inputs that cannot work."""


from streamlit.testing.v1 import AppTest

from apptest_helpers import ROOT, open_page
from cnnviz import summary as S
from cnnviz.checkpoint import Checkpoint
from cnnviz.network import STACK_PRESETS, build_model
from cnnviz.notation import percent
from ui.training import TRAINED_KEY

PAGE = "pages/6_VGG16_explorer.py"


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
    assert "Input **25,088** → output **4,096**" in text
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
    at = run_page(session={TRAINED_KEY: ckpt}, model="cnn")
    assert not at.info
    expected = S.summarize_stack(stack, shape)
    assert metrics(at)["Parameters"] == f"{expected.params:,}"
    assert at.number_input(key="vgg.input").value == 32
    # gap makes it work at any size; other sizes give other multiply-adds
    at.number_input(key="vgg.input").set_value(64).run()
    assert metrics(at)["Multiply-adds"] == f"{S.summarize_stack(stack, (3, 64, 64)).macs:,}"


def test_alexnet_walk_through_shows_the_flatten():
    text = text_of(run_page(model="alexnet"))
    assert "max pool 3×3, stride 2 → 6×6×256" in text
    assert "flatten 6×6×256 → 9,216-dimensional vector" in text
    assert "dropout p=0.5 →" not in text


def test_the_introduction_describes_the_selected_model():
    intro = run_page(model="alexnet").markdown[0].value
    assert intro.startswith("**AlexNet** maps a 224×224×3 image to 1,000 class scores through 5 convolution "
                            "layers (11×11, 5×5 and 3×3 kernels), 3 max-pooling layers and 3 fully connected layers.")
    assert "13 convolution" not in intro and "VGG-16" not in intro
    intro = run_page(model="resnet18", input="160").markdown[0].value
    assert intro.startswith("**ResNet-18** maps a 160×160×3 image to 1,000 class scores through 20 convolution")
    text = run_page().markdown[0].value
    assert "The lecture's example network, **VGG-16**, maps a 224×224×3 image to 1,000 class scores through " \
           "13 convolution layers (3×3 kernels), 5 max-pooling layers and 3 fully connected layers" in text


def test_resnet_shares_name_the_fully_connected_layer_and_never_round_to_100():
    at = run_page(model="resnet18")
    text = text_of(at)
    resnet = S.summarize("resnet18", 224)
    assert f"The fully connected layer holds **{percent(resnet.share('fc'))}** of the parameters" in text
    assert "layer4.0.conv2 alone" not in text
    assert "the largest layer is layer4.0.conv2 (20.2%)" in text
    assert "**99.97%** of the multiply-adds" in text and "100.0%" not in text


def test_a_small_layers_share_is_not_rounded_to_zero():
    at = run_page(layer="2")  # conv1_2: 36,928 of 138,357,544 parameters
    caption = next(c.value for c in at.caption if c.value.startswith("conv1_2:"))
    assert "conv1_2: 0.03% of the parameters" in caption and "0.0%" not in caption.replace("0.03%", "")


def test_lecture_numbers_are_compared_honestly():
    text = text_of(run_page())
    assert "15,483,821,032" in text and "≈ 15.48 billion" in text and "≈16 billion" in text
    assert "rounds to 16 billion" not in text
    assert "**138,357,544**" in text and "138 million" in text
    assert "it is what you get" not in text
    assert "may" in text and f"{138_357_544 / 2 ** 20:.1f}" in text  # a possibility, not a fact
    # The lecture's gradient: one number per parameter.
    assert r"\nabla L(\theta) \in \mathbb{R}^{138357544}" in text and "one number per parameter" in text
    assert r"\mathbb{R}^{132000000}" in text


def test_the_page_uses_the_shared_session_key_and_chart_helper():
    source = (ROOT / PAGE).read_text()
    assert "TRAINED_KEY" in source and '"cnnviz.trained"' not in source
    assert "st.plotly_chart" not in source and "getattr(" not in source
