"""cnnviz.exercises: every generator held to torch on 200 seeds (the answer it accepts is torch's value, and
a wrong one is refused), the typed forms it reads, and the messages for text it cannot read."""

from __future__ import annotations

import math
from functools import lru_cache

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from cnnviz import exercises as E
from cnnviz.network import build_model, parse_stack, with_mean_pooling

SEEDS = range(200)
ON_META = torch.device("meta")


def accepted(question: E.Question, response: str) -> bool:
    feedback = question.check(response)
    assert feedback.understood, (question.code, response, feedback.message)
    return feedback.right


def wrong_answer(answer: E.Answer) -> str:
    """A well-formed answer that is not the right one."""
    if isinstance(answer, E.Whole):
        return str(answer.value + 1)
    if isinstance(answer, E.Decimal):
        wrong = answer.value + 3 * answer.tolerance
        return f"{wrong * 100:.6f}%" if answer.share else f"{wrong:.6f}"
    if isinstance(answer, E.Shape):
        m, l, *d = answer.lecture_order
        return "×".join(str(n) for n in (m + 1, l, *d))
    if isinstance(answer, E.Choice):
        return next(option for option in answer.options if option != answer.value)
    if isinstance(answer, E.Cells):
        return E.describe_cells(answer.cells ^ {(answer.rows, answer.cols)}, answer.rows, answer.cols)
    raise AssertionError(type(answer))


def check_against(question: E.Question, truth) -> None:
    """The question's own answer equals torch's `truth`; typed as truth it is accepted, a wrong answer is not."""
    answer = question.answer
    if isinstance(answer, E.Decimal):
        assert answer.value == pytest.approx(truth, rel=1e-9, abs=1e-12), question.code
        typed = f"{truth * 100:.{answer.places + 2}f}%" if answer.share else f"{truth:.{answer.places + 2}f}"
    elif isinstance(answer, E.Shape):
        assert answer.dims == tuple(truth), question.code
        d, m, l = truth if len(truth) == 3 else (None, *truth)
        typed = f"{m}x{l}x{d}" if d is not None else f"{m}x{l}"
    elif isinstance(answer, E.Cells):
        assert answer.cells == truth, question.code
        typed = ", ".join(f"({r}, {c})" for r, c in sorted(truth)) or "none"
    elif isinstance(answer, E.Choice):
        assert answer.value == truth, question.code
        typed = truth.upper()
    else:
        assert answer.value == truth, question.code
        typed = f"{truth:,}"
    assert accepted(question, typed), (question.code, typed)
    assert accepted(question, answer.text), (question.code, answer.text)
    assert not accepted(question, wrong_answer(answer)), (question.code, wrong_answer(answer))
    assert question.worked and question.hint and question.prompt


def questions(kind: str):
    return [E.make(kind, seed) for seed in SEEDS]


# ---------------------------------------------------------------------------------------- 1. convolution

def test_conv_size_is_conv2ds_output_size():
    for q in questions("conv-size"):
        g = q.given
        out = F.conv2d(torch.zeros(1, 1, g["n"], g["n"], device=ON_META), torch.zeros(1, 1, g["k"], g["k"], device=ON_META),
                       padding=g["padding"], stride=g["stride"], dilation=g["dilation"])
        check_against(q, out.shape[-1])
        assert accepted(q, f"{out.shape[-1]}×{out.shape[-1]}")


def test_conv_params_are_conv2ds_parameters():
    for q in questions("conv-params"):
        g = q.given
        layer = nn.Conv2d(g["in_channels"], g["filters"], g["kernel"], device=ON_META)
        check_against(q, sum(p.numel() for p in layer.parameters()))


def test_conv_macs_are_outputs_times_weights_and_bias():
    for q in questions("conv-macs"):
        g = q.given
        layer = nn.Conv2d(g["in_channels"], g["filters"], g["kernel"], stride=g["stride"], padding=g["padding"],
                          device=ON_META)
        out = layer(torch.zeros(1, g["in_channels"], g["size"], g["size"], device=ON_META))
        check_against(q, out.numel() * (layer.weight[0].numel() + 1))


# ---------------------------------------------------------------------------------------- 2. pooling

def test_pooled_value_is_torchs():
    kinds = set()
    for q in questions("pool-value"):
        g = q.given
        pool = F.max_pool2d if g["kind"] == "max" else F.avg_pool2d
        out = pool(torch.tensor(g["x"], dtype=torch.float64)[None, None], g["kernel"], g["stride"])
        truth = float(out[0, 0, g["row"], g["col"]])
        check_against(q, int(truth) if g["kind"] == "max" else truth)
        kinds.add(g["kind"])
    assert kinds == {"max", "mean"}


def test_unseen_cells_get_no_gradient_through_pooling():
    empty = 0
    for q in questions("pool-unseen"):
        g = q.given
        x = torch.ones(1, 1, g["height"], g["width"], requires_grad=True)
        F.avg_pool2d(x, g["kernel"], g["stride"]).sum().backward()
        truth = frozenset((r + 1, c + 1) for r, c in (x.grad[0, 0] == 0).nonzero().tolist())
        check_against(q, truth)
        empty += not truth
    assert 0 < empty < 100


def test_head_parameters_are_linear_layers():
    for q in questions("pool-head"):
        g = q.given
        x = torch.zeros(1, g["channels"], g["size"], g["size"], device=ON_META)
        features = (x.flatten(1) if g["head"] == "flatten" else F.adaptive_avg_pool2d(x, 1).flatten(1)).shape[1]
        check_against(q, sum(p.numel() for p in nn.Linear(features, g["units"], device=ON_META).parameters()))


# ---------------------------------------------------------------------------------------- 3. stacking

def test_stack_shape_is_the_models_output():
    for q in questions("stack-shape"):
        with ON_META:
            model = build_model(q.given["stack"], tuple(q.given["in_shape"]))
            out = model(torch.zeros(1, *q.given["in_shape"]))
        check_against(q, tuple(out.shape[1:]))


def test_receptive_field_is_what_a_centre_unit_gets_gradient_from():
    """The gradient probe of tests/test_network.py, one channel, on an input large enough that the centre
    unit's field is not clipped."""
    side = 160
    for q in questions("stack-rf"):
        specs = [spec if spec.kind != "conv" else type(spec)("conv", spec.kernel, spec.stride, spec.padding, 1)
                 for spec in with_mean_pooling(parse_stack(q.given["stack"]))]
        model = build_model(specs, (1, side, side), activation="identity").double()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
        x = torch.zeros(1, 1, side, side, dtype=torch.float64, requires_grad=True)
        out = model(x)
        out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
        seen = (x.grad[0, 0] != 0).nonzero()
        height, width = (int(seen[:, i].max() - seen[:, i].min()) + 1 for i in (0, 1))
        assert height == width and seen[:, 0].min() > 0 and seen[:, 0].max() < side - 1
        check_against(q, height)


# ---------------------------------------------------------------------------------------- 4. what models learn

def test_winning_template_is_a_linear_layers_argmax():
    for q in questions("learn-template"):
        g = q.given
        layer = nn.Linear(4, 3, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(torch.tensor(g["templates"]).reshape(3, 4))
            layer.bias.copy_(torch.tensor(g["bias"]))
        scores = layer(torch.tensor(g["x"], dtype=torch.float64).reshape(4))
        assert int((scores == scores.max()).sum()) == 1
        check_against(q, g["classes"][int(scores.argmax())])


def test_linear_model_parameters_are_nn_linears():
    for q in questions("learn-params"):
        d, m, l = q.given["in_shape"]
        check_against(q, sum(p.numel() for p in nn.Linear(d * m * l, q.given["units"], device=ON_META).parameters()))


# ---------------------------------------------------------------------------------------- 5. training

def test_sgd_step_is_torchs_optimizer_step():
    for q in questions("train-sgd"):
        g = q.given
        w = nn.Parameter(torch.tensor(g["w"], dtype=torch.float64))
        optimizer = torch.optim.SGD([w], lr=g["lr"])
        loss = 0.5 * (w * g["x"] - g["y"]) ** 2
        loss.backward()
        optimizer.step()
        check_against(q, w.item())


def test_loss_is_cross_entropy():
    for q in questions("train-loss"):
        g = q.given
        truth = F.cross_entropy(torch.tensor(g["scores"], dtype=torch.float64)[None], torch.tensor([g["target"]]))
        check_against(q, float(truth))


# ---------------------------------------------------------------------------------------- 6. VGG

@lru_cache(maxsize=None)
def torchvision_vgg(name: str) -> nn.Module:
    with ON_META:
        return getattr(torchvision.models, name)(weights=None).eval()


@lru_cache(maxsize=None)
def vgg16_output_shapes(size: int) -> dict[str, tuple[int, ...]]:
    """The output shape (without the batch) of every module of torchvision's VGG-16, by its name."""
    model, shapes = torchvision_vgg("vgg16"), {}

    def record(name):
        def hook(module, inputs, output):
            shapes[name] = tuple(output.shape[1:])
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in model.named_modules() if name]
    try:
        model(torch.zeros(1, 3, size, size, device=ON_META))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def test_vgg_shapes_are_torchvisions():
    sizes = set()
    for q in questions("vgg-shape"):
        check_against(q, vgg16_output_shapes(q.given["size"])[q.given["layer"]])
        sizes.add(q.given["size"])
    assert 224 in sizes and len(sizes) > 3


def test_vgg_shape_worked_lines_walk_up_to_the_layer_asked():
    for q in questions("vgg-shape")[:60]:
        rows = {r.label: r for r in E.vgg_summary("vgg16", q.given["size"]).layers}
        labels = [label for label, _ in q.worked[1:]]
        asked = next(r for r in rows.values() if r.name == q.given["layer"])
        assert labels[-1] == asked.label and all(rows[label].index <= asked.index for label in labels)
        assert [rows[label].index for label in labels] == sorted(rows[label].index for label in labels)


def test_the_worked_arithmetic_ends_in_the_answer():
    for kind in E.GENERATORS:
        for q in questions(kind)[:50]:
            if isinstance(q.answer, E.Choice):  # the winner is the line with the largest number
                continue
            assert any(q.answer.text in expression for _, expression in q.worked), (q.code, q.answer.text, q.worked)


def test_vgg_layer_parameters_are_torchvisions():
    for q in questions("vgg-params"):
        module = torchvision_vgg(q.given["model"]).get_submodule(q.given["layer"])
        check_against(q, sum(p.numel() for p in module.parameters()))


def test_vgg_shares_are_torchvisions():
    asked = set()
    for q in questions("vgg-share"):
        model = torchvision_vgg(q.given["model"])
        part = sum(p.numel() for name in q.given["layers"] for p in model.get_submodule(name).parameters())
        check_against(q, part / sum(p.numel() for p in model.parameters()))
        asked.add((q.given["model"], tuple(q.given["layers"])))
    assert ("vgg16", ("classifier.0",)) in asked  # the lecture's fc1, 74.3% of VGG-16
    fc1 = next(q for q in questions("vgg-share") if q.given == {"model": "vgg16", "layers": ["classifier.0"]})
    assert fc1.answer.text == "74.3%" and accepted(fc1, "74.3 %") and accepted(fc1, "0.743")


# ---------------------------------------------------------------------------------------- 7. softmax

def test_largest_probability_is_torchs_softmax_argmax():
    for q in questions("softmax-largest"):
        p = torch.softmax(torch.tensor(q.given["scores"], dtype=torch.float64), 0)
        check_against(q, q.given["classes"][int(p.argmax())])


def test_probability_is_torchs_softmax():
    for q in questions("softmax-prob"):
        p = torch.softmax(torch.tensor(q.given["scores"], dtype=torch.float64), 0)[q.given["asked"]]
        check_against(q, float(p))
        assert accepted(q, f"{round(float(p) * 100)}%")  # to the nearest percent, as asked


# ---------------------------------------------------------------------------------------- the table

def test_every_lesson_asks_and_every_kind_is_tested():
    lessons = {g.lesson for g in E.GENERATORS.values()}
    assert lessons == {"1_Convolution.py", "2_Pooling.py", "3_Stacking_layers.py", "4_What_models_learn.py",
                       "5_Train_a_CNN.py", "6_VGG16_explorer.py", "7_Classify_an_image.py"}
    tested = {name.split("test_")[1] for name in globals() if name.startswith("test_")}
    assert len(tested) >= len(E.GENERATORS) + 1


@pytest.mark.parametrize("kind", list(E.GENERATORS))
def test_a_seed_reproduces_its_question(kind):
    first, again, other = E.make(kind, 17), E.make(kind, 17), [E.make(kind, seed) for seed in range(30)]
    assert first == again and first.code == f"{kind}.17"
    assert len({(q.prompt, q.answer.text) for q in other}) >= 5  # many questions, not one


def test_codes_in_links():
    assert E.parse_code("conv-size.17") == ("conv-size", 17)
    assert E.parse_code("pool-head.0", "2_Pooling.py") == ("pool-head", 0)
    for bad in ("conv-size", "conv-size.x", "nope.3", "conv-size.-1", "conv-size.1234567", ""):
        with pytest.raises(ValueError, match="a question like"):
            E.parse_code(bad)
    with pytest.raises(ValueError, match="pool-value"):
        E.parse_code("conv-size.3", "2_Pooling.py")


# ---------------------------------------------------------------------------------------- typed forms

@pytest.mark.parametrize("typed, value", [
    ("1,792", 1792), ("1792", 1792), ("1 792", 1792), ("−3", -3), ("–3", -3), ("-3", -3), ("0.75", 0.75),
    ("0,75", 0.75), ("3/4", 0.75), ("−3/4", -0.75), (" 12 ", 12), ("1e-3", 0.001), ("138,357,544", 138357544),
])
def test_numbers(typed, value):
    assert E.parse_number(typed) == (pytest.approx(value), False)


def test_percentages():
    assert E.parse_number("74.3%") == (pytest.approx(0.743), True)
    share = E.Decimal(0.74271, places=1, share=True)
    for typed in ("74.3%", "74.3 %", "74.3", "0.743", "0,743", "74.27%"):
        assert share.check(typed).right, typed
    for typed in ("75%", "0.75", "7.4%"):
        assert not share.check(typed).right, typed


def test_decimals_to_the_places_asked():
    ninth = E.Decimal(1 / 9, places=2)
    assert all(ninth.check(t).right for t in ("0.11", "0,11", "1/9", "0.1111"))
    assert not any(ninth.check(t).right for t in ("0.1", "0.12", "1/8"))


def test_whole_numbers_exactly():
    layer = E.Whole(1792)
    assert all(layer.check(t).right for t in ("1792", "1,792", "1 792", "1792.0"))
    assert not any(layer.check(t).right for t in ("1791", "1792.5", "1,793"))
    side = E.Whole(5, side=True)
    assert side.check("5x5").right and side.check("5 × 5").right and side.check("5").right
    assert not side.check("5×6").right and "square" in side.check("5×6").message


def test_shapes_in_the_lectures_order():
    shape = E.Shape((16, 4, 4))  # torch's (d, m, l)
    for typed in ("4x4x16", "4×4×16", "4 x 4 x 16", "4 × 4 × 16", "4*4*16", "(4, 4, 16)", "4X4X16"):
        assert shape.check(typed).right, typed
    channels_first = shape.check("16x4x4")
    assert not channels_first.right and channels_first.understood and "torch's order" in channels_first.message
    assert E.Shape((7, 7)).check("7x7").right


def test_class_names_in_any_case():
    choice = E.Choice("cat", ("cat", "dog", "ship"))
    assert all(choice.check(t).right for t in ("cat", "Cat", " CAT ", "the cat", "class cat"))
    assert choice.check("dog").understood and not choice.check("dog").right


def test_cells():
    cells = frozenset({(5, c) for c in range(1, 6)} | {(r, 5) for r in range(1, 6)})
    answer = E.Cells(cells, 5, 5)
    assert answer.text == "row 5 and column 5 (9 cells)"
    for typed in ("row 5, column 5", "row 5 and column 5", "Row 5; Col 5", "rows 5 & columns 5",
                  "all of row 5 and the whole column 5", answer.text,
                  ", ".join(f"({r},{c})" for r, c in sorted(cells))):
        assert answer.check(typed).right, typed
    assert E.parse_cells("row 1 col 4", 5, 5) == {(1, 4)}  # one cell
    assert E.parse_cells("(1, 4), (4, 1)", 5, 5) == {(1, 4), (4, 1)}
    assert E.parse_cells("rows 4 and 5", 5, 2) == {(4, 1), (4, 2), (5, 1), (5, 2)}
    assert E.parse_cells("None", 5, 5) == frozenset()
    assert not answer.check("row 5").right and answer.check("row 5").understood


@pytest.mark.parametrize("answer, typed, says", [
    (E.Whole(5), "five", "not a number"),
    (E.Whole(5), "", "Type an answer"),
    (E.Whole(5), "   ", "Type an answer"),
    (E.Whole(5), "1/0", "divide by 0"),
    (E.Decimal(0.5), "0.5.5", "not a number"),
    (E.Shape((16, 4, 4)), "4 by 4", "height×width×channels"),
    (E.Shape((16, 4, 4)), "4x4", "3 numbers"),
    (E.Choice("cat", ("cat", "dog")), "cow", "one of: cat, dog"),
    (E.Cells(frozenset({(1, 1)}), 3, 3), "the corner", "Name the cells"),
    (E.Cells(frozenset({(1, 1)}), 3, 3), "row 4", "no cell (4, 1)"),
    (E.Whole(5, side=True), "5x5x5", "number of rows"),
])
def test_unreadable_answers_are_explained_not_marked_wrong(answer, typed, says):
    feedback = answer.check(typed)
    assert not feedback.understood and not feedback.right and says in feedback.message


def test_feedback_never_gives_the_answer_away():
    """The hall checks its own answers before the presenter reveals: the message says what was understood."""
    for kind in E.GENERATORS:
        q = E.make(kind, 5)
        feedback = q.check(wrong_answer(q.answer))
        assert not feedback.right and feedback.message.startswith("Not right: you answered "), feedback.message
        assert feedback.message.count(q.answer.text) <= wrong_answer(q.answer).count(q.answer.text)
