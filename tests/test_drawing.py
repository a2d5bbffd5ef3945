"""A drawing made into a network's input the MNIST way (cnnviz.drawing), held to the geometry of the
strokes and to the model's own softmax; the classify page with a drawing in its canvas's state and with
a camera photo, through AppTest."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import streamlit as st
import torch
from PIL import Image

from apptest_helpers import open_page
from cnnviz import classify, images, notation
from cnnviz.classify import Recipe
from cnnviz.drawing import (
    CANVAS_SIDE,
    EMPTY_MESSAGE,
    Drawing,
    DrawingError,
    EmptyDrawing,
    centre_of_mass,
    classify_drawing,
    ink_box,
    prepare_drawing,
    read_strokes,
)

PAGE = "pages/7_Classify_an_image.py"
CANVAS_KEY = "classify.drawing"
RECTANGLE = [{"w": 20, "p": [60, 100, 200, 100, 200, 180, 60, 180, 60, 100]}]  # an outline, 140×80 between centres
LINE = [{"w": 20, "p": [40, 140, 240, 140]}]  # a bar, 200 long between its ends' centres


@pytest.fixture(scope="module")
def bundled() -> classify.Classifier:
    return classify.load_bundled()


def ink_of(tensor: torch.Tensor) -> np.ndarray:
    """The network input's ink (light on black): its values, (H, W)."""
    return tensor[0].numpy().astype(np.float64)


def bbox(ink: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the non-zero pixels, right and bottom exclusive."""
    rows, cols = np.nonzero(ink)
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def mass_centre(ink: np.ndarray) -> tuple[float, float]:
    ys, xs = np.indices(ink.shape)
    return float(((xs + 0.5) * ink).sum() / ink.sum()), float(((ys + 0.5) * ink).sum() / ink.sum())


# ---------------------------------------------------------------- reading and drawing the strokes


def test_strokes_are_drawn_as_dark_ink_with_round_ends():
    dot = read_strokes([{"w": 40, "p": [140, 140]}]).render()
    assert dot.mode == "L" and dot.size == (CANVAS_SIDE, CANVAS_SIDE)
    ink = 255 - np.asarray(dot, dtype=np.int64)
    assert ink.max() == 255 and ink[0, 0] == 0
    assert abs((ink > 0).sum() - math.pi * 20 ** 2) < 0.06 * math.pi * 20 ** 2  # a disc of radius 20
    left, top, right, bottom = ink_box(dot)
    assert abs(left - 120) <= 1 and abs(top - 120) <= 1 and abs(right - 161) <= 1 and abs(bottom - 161) <= 1
    # a bar: as long as its ends' centres apart plus the brush, as thick as the brush
    left, top, right, bottom = ink_box(read_strokes(LINE).render())
    assert abs(left - 30) <= 1 and abs(right - 251) <= 1 and abs(top - 130) <= 1 and abs(bottom - 151) <= 1


def test_the_browsers_strokes_are_checked_and_clamped_onto_the_canvas():
    drawing = read_strokes([{"w": 12.6, "p": [-50, 10.4, 400, 300]}])
    assert drawing.strokes[0].width == 13 and drawing.strokes[0].points == ((0, 10), (CANVAS_SIDE, CANVAS_SIDE))
    assert read_strokes(drawing.as_json()) == drawing  # what the canvas is told to load reads back the same
    assert read_strokes(None).empty and read_strokes([]).empty
    assert read_strokes([{"w": 1000, "p": [1, 2]}]).strokes[0].width == 80
    assert read_strokes(RECTANGLE).ident == read_strokes(RECTANGLE).ident != read_strokes(LINE).ident
    for garbage in ("strokes", {"w": 3}, [{"w": 3}], [{"w": 3, "p": [1, 2, 3]}], [{"w": True, "p": [1, 2]}],
                    [{"w": 3, "p": [1, "2"]}], [{"w": float("nan"), "p": [1, 2]}], [{"w": 3, "p": []}], [[1, 2]]):
        with pytest.raises(DrawingError, match="could not be read"):
            read_strokes(garbage)
    with pytest.raises(DrawingError, match="strokes; at most 400"):
        read_strokes([{"w": 3, "p": [1, 2]}] * 401)
    with pytest.raises(DrawingError, match="more than 20,000 points"):
        read_strokes([{"w": 3, "p": [1, 2] * 20_001}])


# ---------------------------------------------------------------- the MNIST recipe


def test_a_drawn_bar_is_cropped_scaled_to_20_pixels_centred_and_inverted(bundled):
    drawing = read_strokes(LINE)
    prepared = prepare_drawing(drawing, bundled.recipe)
    assert [s.title for s in prepared.steps] == ["Your drawing", "Cropped to the ink", "Scaled to fit 20×20",
                                                 "Centred in 28×28", "Inverted", "Scaled to numbers"]
    box = ink_box(drawing.render())
    cropped, scaled = prepared.steps[1], prepared.steps[2]
    assert cropped.shape == (1, box[3] - box[1], box[2] - box[0])
    height, width = scaled.shape[1:]
    assert width == 20 and height == round((box[3] - box[1]) * 20 / (box[2] - box[0])) == 2
    assert prepared.tensor.shape == (1, 28, 28) and prepared.inverted
    ink = ink_of(prepared.tensor)
    left, top, right, bottom = bbox(ink)
    assert (right - left, bottom - top) == (20, 2)  # the scaled ink, whole, in the field
    assert (left, right) == (4, 24)  # a symmetric bar: its centre of mass is its middle
    x, y = mass_centre(ink)
    assert abs(x - 14) <= 0.5 and abs(y - 14) <= 0.5
    assert ink[0, 0] == 0 and ink.max() > 0.99  # light ink on black, as Fashion-MNIST


def test_a_drawn_rectangle_ends_centred_with_the_expected_bounding_box(bundled):
    drawing = read_strokes(RECTANGLE)
    left, top, right, bottom = ink_box(drawing.render())
    assert (left, top, right, bottom) == (50, 90, 211, 191)  # the corners' centres ± the brush's radius
    prepared = prepare_drawing(drawing, bundled.recipe)
    scale = 20 / (right - left)
    expected = (20, round((bottom - top) * scale))  # 161 × 101 pixels of ink → 20 × 13
    ink = ink_of(prepared.tensor)
    l, t, r, b = bbox(ink)
    assert (r - l, b - t) == expected == (20, 13)
    assert (l, t) == (4, 8)  # a symmetric outline: 28 − 20 = 8 and 28 − 13 = 15 pixels of frame, shared
    x, y = mass_centre(ink)
    assert abs(x - 14) <= 0.5 and abs(y - 14) <= 0.5
    # the outline stays an outline: its middle is dark
    assert ink[14, 14] == 0 and ink[t, 14] > 0.5 and ink[b - 1, 14] > 0.5


def test_the_centre_of_mass_not_the_box_is_centred_and_the_ink_stays_in_the_field(bundled):
    ell = [{"w": 20, "p": [60, 40, 60, 240, 240, 240]}]  # an L, 201 × 221 pixels of ink: most of it low and left
    prepared = prepare_drawing(read_strokes(ell), bundled.recipe)
    ink = ink_of(prepared.tensor)
    l, t, r, b = bbox(ink)
    assert (r - l, b - t) == (18, 20)
    x, y = mass_centre(ink)
    assert abs(x - 14) <= 0.5 and abs(y - 14) <= 0.5
    assert (l + r) / 2 > 14 and (t + b) / 2 < 14  # the box sits up and right of the middle
    # a heavy blob at one end of a long thin line: centring its mass would push the line out; it stays in
    lopsided = [{"w": 80, "p": [20, 140]}, {"w": 4, "p": [20, 140, 270, 140]}]
    ink = ink_of(prepare_drawing(read_strokes(lopsided), bundled.recipe).tensor)
    l, t, r, b = bbox(ink)
    assert l >= 0 and r <= 28 and r - l == 20
    expected_left = min(max(round(14 - centre_of_mass(_scaled(lopsided, bundled))[0]), 0), 8)
    assert l == expected_left == 8


def _scaled(strokes, clf) -> Image.Image:
    """The 'Scaled to fit' step's picture, at its true size (the step shows it enlarged)."""
    step = prepare_drawing(read_strokes(strokes), clf.recipe).steps[2]
    return step.image.resize((step.shape[2], step.shape[1]), Image.Resampling.NEAREST)


def test_invert_no_keeps_dark_ink_on_white(bundled):
    drawing = read_strokes(RECTANGLE)
    inverted = prepare_drawing(drawing, bundled.recipe)
    plain = prepare_drawing(drawing, bundled.recipe, invert="no")
    assert "Inverted" not in [s.title for s in plain.steps] and not plain.inverted
    assert torch.allclose(plain.tensor, 1 - inverted.tensor, atol=1e-6)
    assert torch.equal(prepare_drawing(drawing, bundled.recipe, invert="yes").tensor, inverted.tensor)


def test_probabilities_are_the_models_softmax_on_the_prepared_tensor(bundled):
    prepared = prepare_drawing(read_strokes(RECTANGLE), bundled.recipe)
    prediction = classify.predict(bundled, prepared.tensor, record=False, repeats=0)
    with torch.inference_mode():
        expected = torch.softmax(bundled.model(prepared.tensor[None]), dim=1)[0]
    assert torch.allclose(prediction.probabilities, expected, atol=1e-6)
    assert abs(float(prediction.probabilities.sum()) - 1) < 1e-5


def test_a_stroke_is_classified_on_one_thread_and_torchs_setting_is_put_back(bundled):
    drawing = read_strokes(RECTANGLE)
    before = torch.get_num_threads()
    threads_seen = []
    hook = bundled.model.register_forward_hook(lambda *_: threads_seen.append(torch.get_num_threads()))
    try:
        prepared, prediction = classify_drawing(drawing, bundled)
    finally:
        hook.remove()
    assert threads_seen == [1] and torch.get_num_threads() == before
    assert torch.equal(prepared.tensor, prepare_drawing(drawing, bundled.recipe).tensor)
    with torch.inference_mode():
        expected = torch.softmax(bundled.model(prepared.tensor[None]), dim=1)[0]
    assert torch.allclose(prediction.probabilities, expected, atol=1e-6)
    assert prediction.activations == []  # nothing recorded: the page records the maps once the drawing rests


def test_a_blank_canvas_says_draw_something_first(bundled):
    with pytest.raises(EmptyDrawing, match="Draw something first"):
        prepare_drawing(Drawing(), bundled.recipe)
    assert EMPTY_MESSAGE.startswith("Draw something first")


def test_a_photo_network_sees_the_drawing_as_a_picture_like_an_upload():
    recipe = Recipe(3, (224, 224), 256, "crop", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    drawing = read_strokes(RECTANGLE)
    prepared = prepare_drawing(drawing, recipe)
    upload = classify.prepare(images.LoadedImage(drawing.render(), "Drawing", "L", (280, 280)), recipe)
    assert torch.equal(prepared.tensor, upload.tensor) and prepared.tensor.shape == (3, 224, 224)
    assert prepared.steps[0].title == "Your drawing"
    assert [s.title for s in prepared.steps[1:]] == [s.title for s in upload.steps[1:]]
    assert "Cropped to the ink" not in [s.title for s in prepared.steps]


# ---------------------------------------------------------------- the page (AppTest)


def canvas(at):
    return next(e for e in at.get("bidi_component") if e.key == CANVAS_KEY)


def draw(at, strokes) -> None:
    """What the canvas does at a stroke's end: send all strokes as its state (the page runs whole in AppTest)."""
    widgets = at._tree.get_widget_states()
    state = widgets.widgets.add()
    state.id = canvas(at).proto.id
    state.json_value = json.dumps({"strokes": strokes})
    at._run(widgets)
    assert not at.exception, [e.value for e in at.exception]


def page_text(at) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def verdict(clf: classify.Classifier, prepared: classify.Prepared) -> str:
    prediction = classify.predict(clf, prepared.tensor)
    index, p = prediction.top(1)[0]
    return f"**{clf.classes[index]}** with probability **{notation.percent(p)}**"


def test_the_page_classifies_a_drawing_and_keeps_it_across_image_sources(bundled):
    at = open_page(PAGE, timeout=90)
    at.segmented_control(key="classify.source").set_value("draw").run()
    assert not at.exception
    assert any(EMPTY_MESSAGE in i.value for i in at.info)
    assert "with probability" not in page_text(at)  # nothing to classify yet: the page stops under the canvas
    assert json.loads(canvas(at).proto.json)["load"]["strokes"] == []

    draw(at, RECTANGLE)
    text = page_text(at)
    assert "From your drawing to the network's input" in text
    for caption in ("1. Your drawing", "2. Cropped to the ink", "3. Scaled to fit 20×20", "4. Centred in 28×28",
                    "5. Inverted", "6. Scaled to numbers"):
        assert any(caption in i.captions for i in at.image), caption
    assert verdict(bundled, prepare_drawing(read_strokes(RECTANGLE), bundled.recipe)) in text
    assert "What the network sees (28×28×1). Prepared and classified in" in text  # the live panel by the canvas
    assert "a link to this page cannot carry it" in text

    at.segmented_control(key="classify.source").set_value("file").run()
    assert "From Fashion-MNIST: Ankle boot to the network's input" in page_text(at)
    at.segmented_control(key="classify.source").set_value("draw").run()
    assert json.loads(canvas(at).proto.json)["load"]["strokes"] == RECTANGLE  # loaded back into the new canvas
    assert verdict(bundled, prepare_drawing(read_strokes(RECTANGLE), bundled.recipe)) in page_text(at)

    at.radio(key="classify.invert").set_value("no").run()  # the page's setting reaches the drawing
    assert verdict(bundled, prepare_drawing(read_strokes(RECTANGLE), bundled.recipe, invert="no")) in page_text(at)

    draw(at, [])  # Clear
    assert any(EMPTY_MESSAGE in i.value for i in at.info) and "with probability" not in page_text(at)


def test_unreadable_strokes_are_a_message_not_a_traceback():
    at = open_page(PAGE, timeout=90)
    at.segmented_control(key="classify.source").set_value("draw").run()
    draw(at, [{"w": "wide", "p": "everywhere"}])
    assert any("could not be read" in e.value for e in at.error)
    assert "with probability" not in page_text(at)


class _Photo:
    """What st.camera_input returns: an UploadedFile of the photo's JPEG bytes."""

    def __init__(self, data: bytes):
        self.name, self._data = "image.jpg", data

    def getvalue(self) -> bytes:
        return self._data


def jpeg(img: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", **options)
    return buffer.getvalue()


def test_a_camera_photo_goes_the_uploads_way(bundled, monkeypatch):
    """AppTest cannot press the camera's shutter: st.camera_input answers with a photo as the browser would
    send it; the rest (loader, EXIF, preprocessing, network) is the page's own."""
    photo = Image.open(images.SAMPLES["Coffee"]).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone held upright: stored on its side
    sideways = photo.transpose(Image.Transpose.ROTATE_90)
    shot: dict = {"photo": None}
    monkeypatch.setattr(st, "camera_input", lambda label, **kwargs: shot["photo"])

    at = open_page(PAGE, timeout=90)
    at.segmented_control(key="classify.source").set_value("camera").run()
    assert any("Take a photo" in i.value for i in at.info) and "with probability" not in page_text(at)

    shot["photo"] = _Photo(jpeg(sideways, exif=exif))
    at.run()
    assert not at.exception
    text = page_text(at)
    assert "From your photo to the network's input" in text
    captions = [c for i in at.image for c in i.captions]
    assert "1. As stored in the file" in captions and "2. Turned upright" in captions
    loaded = images.load_image(shot["photo"].getvalue())
    assert loaded.image.size == photo.size  # turned upright by its EXIF tag
    assert verdict(bundled, classify.prepare(loaded, bundled.recipe, orientation=6)) in text

    shot["photo"] = _Photo(jpeg(photo)[:2000])  # cut off
    at.run()
    assert not at.exception
    assert any("**your photo** can't be used: The image file is truncated" in e.value for e in at.error)
    shot["photo"] = _Photo(b"\xff" * (images.MAX_BYTES + 1))
    at.run()
    assert any("is too large" in e.value for e in at.error)


def test_the_image_source_is_in_the_link():
    at = open_page(PAGE, timeout=90, source="draw")  # a slide's link opens the drawing pad
    assert at.segmented_control(key="classify.source").value == "draw"
    assert any(EMPTY_MESSAGE in i.value for i in at.info)
    assert at.query_params["source"] == ["draw"]
    at.segmented_control(key="classify.source").set_value("file").run()
    assert "source" not in at.query_params  # the default is not written
    at.segmented_control(key="classify.source").set_value("camera").run()
    assert at.query_params["source"] == ["camera"]
    odd = open_page(PAGE, timeout=90, source="scanner")
    assert any("source='scanner' was ignored" in w.value for w in odd.warning)
    assert odd.segmented_control(key="classify.source").value == "file"


def test_the_last_camera_photo_is_kept_when_the_student_looks_elsewhere_and_comes_back(bundled, monkeypatch):
    """A fake camera that behaves as Streamlit's: on_change when a photo is taken or cleared, and empty
    without a change when it is drawn again after another image source (`quiet`)."""
    shot: dict = {"photo": None, "quiet": False}
    seen: dict = {}

    def camera(label, *, key, on_change=None, **kwargs):
        if not shot["quiet"] and seen.get(key) is not shot["photo"]:
            seen[key] = st.session_state[key] = shot["photo"]
            if on_change is not None:
                on_change()
        return shot["photo"]

    monkeypatch.setattr(st, "camera_input", camera)
    photo = Image.open(images.SAMPLES["Coffee"]).convert("RGB")
    at = open_page(PAGE, timeout=90)
    at.segmented_control(key="classify.source").set_value("camera").run()
    shot["photo"] = _Photo(jpeg(photo))
    at.run()
    expected = verdict(bundled, classify.prepare(images.load_image(shot["photo"].getvalue()), bundled.recipe))
    assert expected in page_text(at)

    at.segmented_control(key="classify.source").set_value("file").run()
    assert "From Fashion-MNIST: Ankle boot to the network's input" in page_text(at)
    shot.update(photo=None, quiet=True)  # the camera drawn again starts empty
    at.segmented_control(key="classify.source").set_value("camera").run()
    assert not at.exception
    assert expected in page_text(at) and "Classifying your last photo" in page_text(at)

    shot["quiet"] = False  # the student clears the photo with the camera's own button
    seen.clear()
    seen["classify.camera"] = "something else"
    at.run()
    assert any("Take a photo" in i.value for i in at.info) and "with probability" not in page_text(at)
