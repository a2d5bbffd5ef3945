"""The classify page through Streamlit's AppTest: uploads (good, odd and broken), every model
source, the URL state, and numbers that match the engine's."""

from __future__ import annotations

import hashlib
import io
import time
import tomllib
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest
from torchvision.models import get_model

from apptest_helpers import open_page
from cnnviz import classify, images, notation
from cnnviz.checkpoint import Checkpoint, save_checkpoint
from cnnviz.classify import PRETRAINED
from cnnviz.network import build_model

ROOT = Path(__file__).resolve().parent.parent
PAGE = "pages/7_Classify_an_image.py"


def run_page(session: dict | None = None, **query) -> AppTest:
    return open_page(PAGE, session=session, timeout=90, **query)


def text_of(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def image_uploader(at: AppTest):
    return next(u for u in at.file_uploader if u.label.startswith("…or upload"))


def upload(at: AppTest, name: str, data: bytes, mime: str = "image/png") -> AppTest:
    image_uploader(at).set_value((name, data, mime)).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header claims another size (what a decompression bomb looks like)."""
    import struct
    import zlib

    png = encode(Image.new("1", (1, 1)), "PNG")
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def noise(width: int = 64, height: int = 48) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def expected_probability(name: str) -> tuple[str, float]:
    clf = classify.load_bundled()
    loaded, _ = classify.fashion_test_images()[name]
    prediction = classify.predict(clf, classify.prepare(loaded, clf.recipe).tensor)
    index, p = prediction.top(1)[0]
    return clf.classes[index], p


def test_opens_with_the_bundled_model_on_a_fashion_mnist_test_image():
    at = run_page()
    best, p = expected_probability("Fashion-MNIST: Ankle boot")
    text = text_of(at)
    assert f"**{best}** with probability **{notation.percent(p)}** :green[:material/check_circle:] (the true class is Ankle boot)" in text
    assert "test accuracy 87.9%" in text
    # shapes as the lecture writes them, m×l×d
    assert "Input → every convolution → scores: 28×28×1 → 28×28×16 → 14×14×32 → 7×7×64 → 10" in text
    assert "f maps 28×28×1 = 784 numbers to 10 class scores." in text
    assert "Shape 28×28×1." in text and "x28" not in text
    assert "Σ over all 10 classes" in text
    assert "**Convolution 1 of 3** (Layer 1: conv 3×3, 16 filters)" in text


def test_layer_slider_is_in_the_link_and_a_link_opens_that_layer():
    at = run_page()
    at.slider[0].set_value(3).run()
    assert at.query_params["layer"] in (["3"], "3")
    assert "**Convolution 3 of 3** (Layer 7: conv 3×3, 64 filters) · output 7×7×64" in text_of(at)
    at = run_page(layer="2", img="Coffee")
    assert "**Convolution 2 of 3**" in text_of(at)
    assert "From Coffee to the network's input" in text_of(at)
    assert any("only knows the 10 kinds of clothing" in i.value for i in at.info)


def test_bad_link_values_are_explained_and_ignored():
    at = run_page(model="vgg99", invert="maybe", layer="0")
    warnings = " ".join(w.value for w in at.warning)
    assert "model='vgg99' was ignored" in warnings and "invert='maybe'" in warnings and "layer='0'" in warnings
    assert "with probability" in text_of(at)


def test_an_uploaded_photo_is_prepared_step_by_step_and_classified():
    at = run_page()
    photo = Image.open(images.SAMPLES["Coffee"]).convert("RGB")
    upload(at, "my coffee.png", encode(photo, "PNG"))
    text = text_of(at)
    assert "From my coffee.png to the network's input" in text
    assert "PNG · 400×" in text and "Shape 28×28×1." in text
    clf = classify.load_bundled()
    prediction = classify.predict(clf, classify.prepare(images.load_image(encode(photo, "PNG")), clf.recipe).tensor)
    index, p = prediction.top(1)[0]
    assert f"**{clf.classes[index]}** with probability **{notation.percent(p)}**" in text
    for fmt, mime in (("WEBP", "image/webp"), ("BMP", "image/bmp"), ("TIFF", "image/tiff"), ("JPEG", "image/jpeg")):
        upload(at, f"photo.{fmt.lower()}", encode(photo, fmt), mime)
        assert f"{fmt} · 400×" in text_of(at) and "with probability" in text_of(at) and not at.error, fmt


BAD_UPLOADS = {
    "empty.png": (b"", "empty"),
    "notes.png": (b"Dear student, this is a text file.\n" * 30, "not an image"),
    "cut.png": (encode(noise(), "PNG")[:600], "truncated"),
    "bomb.png": (png_declaring(30_000, 30_000), "too large"),
    "huge.png": (png_declaring(8_000, 6_000), "8000 × 6000 pixels"),
    "big.bmp": (b"BM" + b"\0" * (images.MAX_BYTES + 10), "too large"),
}


def test_bad_uploads_get_a_clear_message_and_no_traceback():
    at = run_page()
    for name, (data, words) in BAD_UPLOADS.items():
        upload(at, name, data)
        errors = " ".join(e.value for e in at.error)
        assert f"**{name}** can't be used" in errors and words in errors, (name, errors)
        assert "Traceback" not in errors and "PIL" not in errors
        assert "with probability" not in text_of(at)  # nothing classified from a broken file
    image_uploader(at).set_value(None).run()  # removing the file brings the sample back
    assert not at.error and "with probability" in text_of(at)


def cmyk_jpeg() -> bytes:
    return encode(noise().convert("CMYK"), "JPEG")


def sixteen_bit_png() -> bytes:
    return encode(Image.fromarray(np.full((30, 40), 40_000, dtype=np.uint16)), "PNG")


def palette_png_with_transparency() -> bytes:
    img = Image.new("P", (30, 30), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (10, 10, 20, 20))
    return encode(img, "PNG", transparency=0)


def rgba_png() -> bytes:
    img = Image.new("RGBA", (30, 20), (0, 0, 0, 0))
    img.paste((0, 0, 0, 255), (10, 5, 20, 15))
    return encode(img, "PNG")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(noise(60, 30), "JPEG", exif=exif)


ODD_UPLOADS = {
    "cmyk.jpg": (cmyk_jpeg(), "Converted from CMYK to RGB"),
    "deep.png": (sixteen_bit_png(), "Scaled 16-bit values (0–65535) down to 8-bit (0–255)"),
    "palette.png": (palette_png_with_transparency(), "Composited transparency onto white"),
    "alpha.png": (rgba_png(), "Composited transparency onto white"),
    "moving.gif": (animated_gif(), "Used the first of 2 frames of the animated GIF"),
    "phone.jpg": (exif_rotated_jpeg(), "Rotated 90° clockwise according to the EXIF orientation tag"),
}


def test_odd_images_are_converted_with_each_step_explained_then_classified():
    at = run_page()
    for name, (data, note) in ODD_UPLOADS.items():
        upload(at, name, data, "image/jpeg" if name.endswith("jpg") else "image/png")
        text = text_of(at)
        assert not at.error, (name, [e.value for e in at.error])
        assert note in text and f"From {name} to the network's input" in text and "with probability" in text, name
    assert "JPEG · 60×30" in text  # the EXIF photo: stored 60 wide, shown upright as 30 wide


def test_each_uploader_states_its_own_limit():
    """Streamlit's server takes files up to the largest checkpoint (config.toml, checked in
    test_checkpoint.py); the image uploader tells the browser the images' own, smaller limit."""
    at = run_page(model="checkpoint")
    limits = {u.label: u.proto.max_upload_size_mb for u in at.file_uploader}
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert limits == {"…or upload your own image": 20, "Checkpoint file from the Train a CNN page": 256}
    assert (limits["…or upload your own image"] - 1) * 1024 * 1024 < images.MAX_BYTES <= 20 * 1024 * 1024
    assert limits["Checkpoint file from the Train a CNN page"] == config["server"]["maxUploadSize"]


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_pretrained_model_without_weights_offers_a_download_and_explains_offline(torch_home, monkeypatch):
    at = run_page(model="resnet18")
    # One short message: what is missing, where to get it, where it goes; each said once.
    assert [w.value for w in at.warning] == [(
        "The ResNet-18 weights (46.8 MB) are not on this computer. Get "
        "[resnet18-f37072fd.pth](https://download.pytorch.org/models/resnet18-f37072fd.pth) and put it in "
        f"`{torch_home / 'hub' / 'checkpoints'}`.")]
    assert [b.label for b in at.main.button] == ["Download ResNet-18 weights (46.8 MB)"]
    assert "with probability" not in text_of(at)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(classify.urllib.request, "urlopen", offline)
    at.button[0].click().run()
    assert not at.exception
    # The error takes the warning's place instead of repeating the path under it.
    assert not at.warning
    assert [e.value for e in at.error] == [(
        "The ResNet-18 weights could not be downloaded (no route to host). On a computer with internet, get "
        "[resnet18-f37072fd.pth](https://download.pytorch.org/models/resnet18-f37072fd.pth) and put it in "
        f"`{torch_home / 'hub' / 'checkpoints'}` here.")]


def test_pretrained_model_from_the_cache_shows_1000_classes_and_pages_of_channels(torch_home):
    key = "mobilenet_v3_small"
    torch.manual_seed(0)
    model = get_model(key, weights=None)
    with torch.no_grad():
        model.classifier[-1].weight.normal_(0, 0.5)  # scores that differ visibly
    PRETRAINED[key].cache_path.parent.mkdir(parents=True)
    torch.save(model.state_dict(), PRETRAINED[key].cache_path)
    at = run_page(model=key, img="Cat")
    text = text_of(at)
    assert "Σ over all 1,000 classes" in text
    assert "400×266 → 384×256 (bilinear, antialiased), keeping the aspect ratio. Shape 256×384×3." in text
    assert "f maps 224×224×3 = 150,528 numbers to 1,000 class scores." in text
    assert "2,542,856 parameters" in text
    slider = at.slider[0]
    assert slider.max == 34  # 52 convolutions, 18 of them squeeze-and-excitation gates with 1x1 outputs
    slider.set_value(34).run()
    assert "576 activation maps of 7×7" in text_of(at)
    at.selectbox(key="classify.ch").set_value(9).run()  # channels 513-576
    assert at.query_params["ch"] in (["9"], "9") and not at.exception


def tiny_checkpoint() -> Checkpoint:
    torch.manual_seed(0)
    stack = "conv3x4,relu,maxpool2,conv3x8,relu,gap,fc3"
    return Checkpoint.from_model(build_model(stack, (3, 16, 16)), stack, (3, 16, 16),
                                 ["plane", "car", "bird"], "cifar10", {"test_accuracy": 0.5})


def test_the_model_trained_in_this_session_is_used_when_there_is_one():
    at = run_page(model="session")
    assert any("No model has been trained" in i.value for i in at.info)
    at = run_page({"cnnviz.trained": tiny_checkpoint()}, model="session", img="Rocket")
    text = text_of(at)
    assert "**The model you trained**" in text and "Σ over all 3 classes" in text
    assert "Centre crop" not in text and "Shape 16×16×3." in text
    assert "**Convolution 1 of 2**" in text and at.slider[0].max == 2


def test_an_uploaded_checkpoint_classifies_and_a_broken_one_is_refused():
    at = run_page(model="checkpoint")
    assert any("Upload a checkpoint" in i.value for i in at.info)
    ckpt_uploader = next(u for u in at.file_uploader if u.label.startswith("Checkpoint file"))
    ckpt_uploader.set_value(("junk.pt", b"PK\x03\x04 not really a zip", "application/octet-stream")).run()
    assert not at.exception
    assert any("**junk.pt** can't be used" in e.value and "not a cnnviz checkpoint" in e.value for e in at.error)
    ckpt_uploader = next(u for u in at.file_uploader if u.label.startswith("Checkpoint file"))
    ckpt_uploader.set_value(("mine.pt", save_checkpoint(tiny_checkpoint()), "application/octet-stream")).run()
    assert not at.exception and not at.error
    text = text_of(at)
    assert "**Checkpoint mine.pt**" in text and "test accuracy 50.0%" in text and "with probability" in text


def checkpoint_uploader(at: AppTest):
    return next(u for u in at.file_uploader if u.label.startswith("Checkpoint file"))


def crafted_checkpoint() -> bytes:
    """The bundled model's file with its first weight a 40000×40000 view of one number (strides 0):
    as small as the original, and 6.4 GB if anything touched its values."""
    raw = torch.load(classify.BUNDLED_MODEL, weights_only=True)
    raw["state_dict"]["0.weight"] = torch.zeros(1).expand(40_000, 40_000)
    buffer = io.BytesIO()
    torch.save(raw, buffer)
    return buffer.getvalue()


def test_a_crafted_checkpoint_gets_a_clear_message_at_once_and_no_traceback():
    at = run_page(model="checkpoint")
    data = crafted_checkpoint()
    assert len(data) < 150_000
    start = time.perf_counter()
    checkpoint_uploader(at).set_value(("crafted.pt", data, "application/octet-stream")).run()
    assert time.perf_counter() - start < 5  # a page run; the refusal itself takes milliseconds
    assert not at.exception
    assert [e.value for e in at.error] == [(
        "**crafted.pt** can't be used: The weights '0.weight' have shape 40000×40000, but the stack needs "
        "16×1×3×3.")]
    assert "with probability" not in text_of(at)


def test_a_checkpoint_shared_by_two_sessions_keeps_each_ones_file_name():
    """The classifier of an uploaded file is cached for every session that uploads the same bytes;
    each session shows its own file name, and the cached object is never changed."""
    from ui.upload import _checkpoint_classifier

    data = save_checkpoint(tiny_checkpoint())
    sessions = {name: run_page(model="checkpoint", img="Rocket") for name in ("mine.pt", "theirs.pt")}
    for name, at in sessions.items():
        checkpoint_uploader(at).set_value((name, data, "application/octet-stream")).run()
    for name, at in sessions.items():
        at.run()
        assert f"**Checkpoint {name}**" in text_of(at)
    cached = _checkpoint_classifier(hashlib.sha256(data).hexdigest(), data)
    assert cached.title == "Your uploaded checkpoint"


def test_link_values_beyond_the_model_are_said_not_swallowed():
    from apptest_helpers import open_page
    at = open_page("pages/7_Classify_an_image.py", layer="500", img="Dog")
    warnings = " ".join(w.value for w in at.warning)
    assert "convolution layer 500, but this model has 3" in warnings  # the bundled CNN: 3 convolutions
    assert "'Dog' is not one of the sample images" in warnings


# --------------------------------------------------------------------------- the network, unit by unit; why


def bundled_input(name: str = "Fashion-MNIST: Ankle boot") -> torch.Tensor:
    clf = classify.load_bundled()
    return classify.prepare(classify.fashion_test_images()[name][0], clf.recipe).tensor


def test_a_links_unit_shows_its_arithmetic_ending_in_torchs_value():
    from cnnviz import explain

    at = run_page(unit="4.5.3.7")
    text = text_of(at)
    assert "**Unit (channel 5, row 3, column 7) of layer 4: conv 3×3, 32 filters**" in text
    model = classify.load_bundled().model
    with torch.no_grad():
        before_relu = float(model[:4](bundled_input()[None])[0, 4, 2, 6])
    # The lesson's lines: channel 1's nine products, the 16 channel sums and the bias, then the ReLU.
    assert f"(bias) = {notation.number(before_relu)}</td>" in text
    assert f"max(0, {notation.number(before_relu)}) = {notation.number(max(before_relu, 0))}" in text
    assert f"torch's value for this unit: {notation.number(before_relu)}" in text
    assert "Input window</b> in layer 3's output (maxpool 2×2)" in text
    clf = classify.load_bundled()
    overview = explain.network_overview(clf, bundled_input())
    top, left, bottom, right = explain.conv_unit(overview, 4, 4, 2, 6).receptive_field
    assert (f"Receptive field (amber): rows {top + 1}–{bottom + 1}, columns {left + 1}–{right + 1} of the input, "
            f"{bottom - top + 1}×{right - left + 1} pixels.") in text


def test_a_score_unit_is_the_dot_product_that_gives_the_score():
    at = run_page(unit="11.10")
    text = text_of(at)
    clf = classify.load_bundled()
    logits = classify.predict(clf, bundled_input()).logits
    assert "**The score of 'Ankle boot' of layer 11: fc, 10 units**" in text
    assert f"(bias) = {notation.number(float(logits[9]))}</td>" in text and "… (570 more)" in text


def test_why_this_class_shows_grad_cam_and_occlusion_for_the_chosen_class():
    from cnnviz import explain

    clf = classify.load_bundled()
    x = bundled_input()
    at = run_page()
    text = text_of(at)
    assert "4. Why this class" in [s.value for s in at.subheader]
    assert "**Grad-CAM** on Layer 7: conv 3×3, 64 filters" in text
    assert explain.grad_cam(clf, x, 9).sentence in text
    assert explain.occlusion_map(clf, x, 9, *explain.default_patch(28, 28)).sentence in text
    at.selectbox(key="classify.cls").set_value("Sneaker").run()
    assert at.query_params["cls"] in (["Sneaker"], "Sneaker")
    assert explain.grad_cam(clf, x, 7).sentence in text_of(at)
    assert [s.value for s in at.subheader] == ["1. Your image", "2. The prediction", "3. The network, unit by unit",
                                               "4. Why this class", "5. Inside the network"]


def test_bad_unit_and_class_links_are_explained():
    at = run_page(unit="4.50.3.7", cls="Dog")
    warnings = [w.value for w in at.warning]
    assert ("The link's unit unit='4.50.3.7' was ignored: Layer 4 (conv 3×3, 32 filters) has 32 channels; there is "
            "no channel 50.") in warnings
    assert ("The link's class cls='Dog' was ignored: this model has no such class; explaining the predicted class, "
            "Ankle boot.") in warnings
    assert "**Unit (channel 3, row 10, column 23) of layer 1: conv 3×3, 16 filters**" in text_of(at)  # the default
    at = run_page(unit="4.5.3")
    assert any("unit='4.5.3' was ignored: it must be layer.channel.row.column" in w.value for w in at.warning)
    at = run_page(unit="10.3")
    assert any("Layer 10 (flatten) computes nothing unit by unit" in w.value for w in at.warning)


def test_the_presenter_view_shows_one_part_the_network_or_why():
    at = run_page(present="1", view="network", unit="7.12.3.4")
    text = text_of(at)
    assert "**Unit (channel 12, row 3, column 4) of layer 7: conv 3×3, 64 filters**" in text
    assert "Grad-CAM" not in text and "Σ over all 10 classes" not in text
    at = run_page(present="1", view="why")
    text = text_of(at)
    assert "**Grad-CAM** on Layer 7: conv 3×3, 64 filters" in text and "**Unit" not in text


def test_a_checkpoint_with_batch_norm_explains_its_units():
    torch.manual_seed(1)
    stack = "conv3x4,bn,relu,maxpool2,conv3x6,relu,gap,fc3"
    ckpt = Checkpoint.from_model(build_model(stack, (3, 16, 16)), stack, (3, 16, 16), ["plane", "car", "bird"],
                                 "cifar10", {"test_accuracy": 0.5})
    at = run_page({"cnnviz.trained": ckpt}, model="session", img="Rocket", unit="1.2.5.6")
    text = text_of(at)
    assert "**Unit (channel 2, row 5, column 6) of layer 1: conv 3×3, 4 filters**" in text
    assert "γ·(x − μ)/√(σ² + ε) + β" in text and "max(0, " in text
    assert "Grad-CAM" in text and not at.error


def test_the_softmax_is_sent_side_by_side_and_stacked_for_a_phone_and_once_to_a_projector():
    import json

    def softmax_specs(at):
        specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        return [s for s in specs if any("score z" in a.get("text", "") for a in s["layout"].get("annotations", []))]

    page = run_page(img="Coffee")
    wide, stacked = softmax_specs(page)
    assert [t["x"] for t in wide["data"]] == [t["x"] for t in stacked["data"]]
    assert [t.get("yaxis") for t in stacked["data"]] == ["y", "y2", "y3"]
    css = " ".join(h.proto.body for h in page.get("html"))
    assert "max-width: 640px" in css and "st-key-narrow-chart-" in css
    projector = run_page(img="Coffee", present="1", view="prediction")
    assert len(softmax_specs(projector)) == 1
