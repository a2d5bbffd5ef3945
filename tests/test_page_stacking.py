"""The stacking-layers page through Streamlit's AppTest: the builder, its table against the engine and
torch, receptive fields, and a URL that holds only what differs from the defaults."""

from apptest_helpers import button, open_page
from cnnviz.network import LECTURE_STACK, analyse, build_model, parse_stack, totals

PAGE = "pages/3_Stacking_layers.py"


def text_of(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def test_builder_table_matches_the_engine_and_reacts():
    at = open_page(PAGE)
    infos = analyse(parse_stack(LECTURE_STACK), (1, 28, 28))
    assert f"**{totals(infos).params:,} parameters**" in text_of(at)
    table = at.dataframe[0].value
    assert list(table["output m×l×d"])[-3:] == ["3×3×64", "576", "10"]
    button(at, "GAP head").click().run()
    assert at.query_params["net"] == ["conv3x16,relu,maxpool2,conv3x32,relu,maxpool2,conv3x64,relu,maxpool2,gap,fc10"]
    model = build_model(at.query_params["net"][0], (1, 28, 28))
    assert f"**{sum(p.numel() for p in model.parameters()):,} parameters**" in text_of(at)
    button(at, "Remove last").click().run()
    assert at.query_params["net"] == ["conv3x16,relu,maxpool2,conv3x32,relu,maxpool2,conv3x64,relu,gap,fc10"]
    button(at, "Conv block").click().run()
    assert at.query_params["net"][0].endswith("conv3x64,relu,conv3x128,relu,gap,fc10")


def test_only_non_default_values_are_in_the_url():
    at = open_page(PAGE)
    assert dict(at.query_params) == {}  # the chosen unit defaults to the last map's centre: nothing to write
    assert "Unit (row 2, column 2) of layer 9" in text_of(at)
    at.number_input(key="stack.rfr").set_value(1).run()
    assert dict(at.query_params) == {"rfr": ["1"]}


def test_a_preset_brings_its_own_input_shape():
    at = open_page(PAGE)
    at.selectbox(key="stack.preset").set_value("VGG-like block (32x32x3)").run()
    assert at.query_params["inp"] == ["32"]
    assert "32×32×3 in" in text_of(at)


def test_receptive_field_of_a_chosen_unit():
    at = open_page(PAGE, net="conv3x8,maxpool2,conv3x8,maxpool2,flatten,fc10", rfl="3", rfr="1", rfc="1")
    # Unit (1, 1) of the second conv: 8x8 field, its top-left reaching into the padding -> rows 1-5.
    assert "input rows **1–5** and columns **1–5**: a **5×5** patch" in text_of(at)
    at.number_input(key="stack.rfr").set_value(4).run()
    assert "input rows **4–11** and columns **1–5**" in text_of(at)  # rows: an interior unit's full 8


def test_a_layer_without_a_map_is_said_and_replaced():
    at = open_page(PAGE, net="conv3x8,maxpool2,flatten,fc10", rfl="4")
    assert any("Layer 4 of this stack has no feature map" in w.value for w in at.warning)
    assert "of layer 2 depends on" in text_of(at)


def test_an_impossible_stack_is_explained_and_kept():
    at = open_page(PAGE, net="conv3x16,relu,fc10")
    assert any("add flatten or gap before fc" in e.value for e in at.error)
    assert at.text_input(key="stack.net").value == "conv3x16,relu,fc10"
    at.text_input(key="stack.net").set_value("conv3x16,relu,maxpool2,conv3x16,,fc10").run()
    assert any("Layer 5 is empty" in e.value for e in at.error)
