"""The training page through AppTest: counts of the built stack, impossible stacks explained
before training, a real (tiny) training that survives reruns and page switches and becomes
the session's model, and checkpoints downloaded, uploaded back, and refused when crafted."""

from __future__ import annotations

import io
import os
import time

import pytest
import torch
from streamlit.testing.v1 import AppTest

from apptest_helpers import button, open_page
from cnnviz.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnnviz.network import build_model

PAGE = "pages/5_Train_a_CNN.py"
TINY = "conv3x4,relu,maxpool2,flatten,fc10"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_page(**query) -> AppTest:
    return open_page(PAGE, **query)


def text_of(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def errors_of(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def wait_until_done(at: AppTest, timeout: float = 60.0):
    job = at.session_state["train.job"]
    assert job.wait(timeout), "training did not finish"
    return job


def test_default_stack_counts_match_torch():
    at = run_page()
    model = build_model("conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,flatten,fc10", (1, 28, 28))
    params = sum(p.numel() for p in model.parameters())
    assert params == 9_098
    text = text_of(at)
    assert f"**{params:,} parameters**" in text and "**299,498 multiply-adds**" in text
    assert "6,000 training and 1,000 test images (bundled subset); 94 steps per epoch" in text  # ceil(6000/64)
    assert not button(at, "Start training").disabled
    assert not at.error


@pytest.mark.parametrize("query, expected", [
    ({"net": "conv3x8/s8,relu,maxpool2,maxpool2,maxpool2,flatten,fc10"},
     "Layer 5 maxpool 2×2: its input is 1×1, smaller than the 2×2 window"),
    ({"net": "conv3x8,relu,flatten,conv3x8,fc10"}, "Layer 4 conv 3×3, 8 filters: it comes after layer 3 flatten"),
    ({"net": "conv3x8,relu,flatten,fc5"}, "Fashion-MNIST has 10 classes: end the stack with fc10"),
    ({"net": "conv3x8,rleu,flatten,fc10"}, "Layer 2 'rleu': unknown layer"),
])
def test_impossible_stacks_are_explained_and_training_is_disabled(query, expected):
    at = run_page(**query)
    assert expected in errors_of(at)
    assert button(at, "Start training").disabled
    assert at.text_input(key="train.net").value == query["net"]  # the student's text is kept


def test_bad_link_values_fall_back_with_a_note():
    at = run_page(epochs="lots", lr="7", data="imagenet")
    warnings = "\n".join(w.value for w in at.warning)
    assert "epochs='lots' was ignored" in warnings and "lr='7' was ignored" in warnings
    assert "data='imagenet' was ignored" in warnings
    assert at.number_input(key="train.epochs").value == 3


def test_too_big_for_memory_is_explained_before_training(monkeypatch):
    import cnnviz.train as train_module
    monkeypatch.setattr(train_module, "free_memory_bytes", lambda device: 20_000_000)
    at = run_page(batch="2048")
    assert "only 20.0 MB free. Use a smaller batch size" in errors_of(at)
    assert button(at, "Start training").disabled


def test_training_survives_reruns_and_page_switches_and_becomes_the_session_model():
    at = run_page(net=TINY, epochs="2", batch="256")
    button(at, "Start training").click().run()
    assert not at.exception
    job = at.session_state["train.job"]
    assert job.alive or job.snapshot().done
    assert button(at, "Start training").disabled or job.snapshot().done
    at.run()  # a rerun keeps the same job going
    assert at.session_state["train.job"] is job
    at.switch_page("pages/1_Convolution.py").run()
    assert not at.exception
    at.switch_page(PAGE).run()
    assert at.session_state["train.job"] is job
    wait_until_done(at)
    at.run()
    assert not at.exception
    snap = job.snapshot()
    assert snap.state == "finished" and snap.checkpoint.test_accuracy > 0.4  # chance: 0.1
    success = "\n".join(s.value for s in at.success)
    assert f"Finished 2 epochs: test accuracy {snap.checkpoint.test_accuracy:.1%}" in success
    trained = at.session_state["cnnviz.trained"]
    assert isinstance(trained, Checkpoint) and trained is snap.checkpoint and trained.stack == TINY
    assert f"test accuracy **{trained.test_accuracy:.1%}**" in text_of(at)
    assert len(at.get("download_button")) == 1
    assert not button(at, "Start training").disabled  # ready for the next run


def test_stop_keeps_the_model_trained_so_far():
    at = run_page(net=TINY, epochs="50", batch="16")
    button(at, "Start training").click().run()
    job = at.session_state["train.job"]
    try:
        deadline = time.monotonic() + 30
        while job.snapshot().progress is None or job.snapshot().progress.step < 5:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        at.run()
        button(at, "Stop").click().run()
        wait_until_done(at)
    finally:
        job.stop()  # never leave 50 epochs running for the next test to queue behind
    at.run()
    snap = job.snapshot()
    assert snap.state == "stopped" and snap.checkpoint.metrics["epochs"] < 50
    assert at.session_state["cnnviz.trained"] is snap.checkpoint


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="train.upload").set_value((name, data, "application/octet-stream"))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_uploaded_checkpoint_becomes_the_session_model_and_crafted_ones_are_refused(tmp_path):
    torch.manual_seed(0)
    model = build_model(TINY, (1, 28, 28))
    ckpt = Checkpoint.from_model(model, TINY, (1, 28, 28), [str(k) for k in range(10)], "fashion-mnist",
                                 {"test_accuracy": 0.5})
    at = upload(run_page(), "mine.pt", save_checkpoint(ckpt))
    loaded = at.session_state["cnnviz.trained"]
    assert loaded.stack == TINY and torch.equal(loaded.state_dict["0.weight"], model[0].weight)
    assert "Loaded **mine.pt**" in "\n".join(s.value for s in at.success)
    # the download offers the same model back
    assert len(at.get("download_button")) == 1

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buffer = io.BytesIO()
    torch.save({"format": "cnnviz-checkpoint", "version": 1, "metrics": Payload()}, buffer)
    at = upload(at, "evil.pt", buffer.getvalue())
    assert "**evil.pt** can't be used: The file was refused because it contains more than weights" in errors_of(at)
    assert not marker.exists()
    assert at.session_state["cnnviz.trained"] is loaded  # the good model stays

    at = upload(at, "cut.pt", save_checkpoint(ckpt)[:5000])
    assert "**cut.pt** can't be used" in errors_of(at) and "cut short" in errors_of(at)
    assert at.session_state["cnnviz.trained"] is loaded
    assert load_checkpoint(save_checkpoint(loaded)).stack == TINY


def test_a_crafted_checkpoint_is_refused_at_once_with_a_message_and_the_session_model_stays():
    """A file of a few kB whose first weight claims 40000×40000 numbers (one number seen with strides 0):
    refused from what the tensor says about itself, before its values are touched."""
    torch.manual_seed(0)
    ckpt = Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                 "fashion-mnist", {"test_accuracy": 0.5})
    at = upload(run_page(), "mine.pt", save_checkpoint(ckpt))
    loaded = at.session_state["cnnviz.trained"]
    raw = ckpt.to_dict()
    raw["state_dict"]["0.weight"] = torch.zeros(1).expand(40_000, 40_000)
    buffer = io.BytesIO()
    torch.save(raw, buffer)
    start = time.perf_counter()
    at = upload(at, "crafted.pt", buffer.getvalue())
    assert time.perf_counter() - start < 5  # one page run; the refusal itself takes milliseconds
    assert errors_of(at) == ("**crafted.pt** can't be used: The weights '0.weight' have shape 40000×40000, "
                             "but the stack needs 4×1×3×3.")
    assert at.session_state["cnnviz.trained"] is loaded


def test_builder_buttons_edit_the_stack_before_the_head():
    at = run_page()
    button(at, "Conv block").click().run()
    assert at.text_input(key="train.net").value == \
        "conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,conv3x32,relu,flatten,fc10"
    button(at, "Batch norm").click().run()
    button(at, "GAP head").click().run()
    assert at.text_input(key="train.net").value == \
        "conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,conv3x32,bn,relu,gap,fc10"
    button(at, "Remove last").click().run()
    button(at, "Mean pool").click().run()
    assert at.text_input(key="train.net").value == "conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,meanpool2,gap,fc10"
    # gap over 16 channels, then fc10: 10·(16 + 1) = 170 parameters in the head
    assert "**1,418 parameters**" in text_of(at)  # 80 + 1,168 + 170
    assert at.query_params["net"] in (["conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,meanpool2,gap,fc10"],
                                      "conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,meanpool2,gap,fc10")


def test_data_set_missing_on_this_server_is_explained():
    from cnnviz.data import full_present
    at = run_page(data="cifar10", net="conv3x8,relu,maxpool2,flatten,fc10")
    if full_present("cifar10") is None:
        assert "CIFAR-10, the lecture's data set (50,000 + 10,000 colour images) is not on this server" in errors_of(at)
        assert "cifar-10-python.tar.gz" in errors_of(at)
        assert button(at, "Start training").disabled
    # the stack is analysed for CIFAR-10's 32x32x3 images either way: conv 3x3x3, 8 filters
    assert "**20,714 parameters**" in text_of(at)  # 8·(3·3·3 + 1) + 10·(16·16·8 + 1) = 224 + 20,490


def test_missing_data_is_explained_without_the_servers_folder_then_downloaded(monkeypatch, tmp_path):
    """MNIST is not in the server's data folder (CNNVIZ_DATA): the message names the folder
    without showing its path, and the shared Download button fetches it (file:// addresses
    standing in for MNIST's mirrors); then it trains on it."""
    import torchvision.datasets as tvd

    from cnnviz import data
    from test_data import md5, write_idx_folder

    monkeypatch.setenv("CNNVIZ_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(data, "DEBIAN_FASHION_DIR", tmp_path / "no-debian")
    server = tmp_path / "server"
    write_idx_folder(server, gz=True, seed=4)
    monkeypatch.setattr(tvd.MNIST, "mirrors", [server.as_uri() + "/"])
    monkeypatch.setattr(tvd.MNIST, "resources", [(f, md5(server / f)) for f, _ in tvd.MNIST.resources])
    at = run_page(data="mnist", net=TINY)
    errors = errors_of(at)
    assert "MNIST digits (60,000 + 10,000 images) is not on this server" in errors
    assert "the server's data folder" in errors and "CNNVIZ_DATA" in errors and str(tmp_path / "data") not in errors
    assert "press *Download MNIST*" in errors and button(at, "Start training").disabled
    button(at, "Download MNIST").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == ["MNIST downloaded to the server's data folder."]
    assert "12 training and 7 test images (torchvision's files in the server's data folder)" in text_of(at)
    assert not button(at, "Start training").disabled


def test_a_second_session_waits_in_the_queue_and_sees_its_position():
    first = run_page(net=TINY, epochs="50", batch="16")
    second = run_page(net=TINY, epochs="1", batch="256")
    button(first, "Start training").click().run()
    job1 = first.session_state["train.job"]
    try:
        deadline = time.monotonic() + 30
        while job1.snapshot().state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        button(second, "Start training").click().run()
        job2 = second.session_state["train.job"]
        assert job2.snapshot().state == "queued" and job2.snapshot().queue_position == 1
        info = "\n".join(i.value for i in second.info)
        assert "Waiting for the server's CPU**: position 1 in the queue (next in line)" in info
        assert "1 training run on CPU, 1 waiting" in text_of(second)
        button(first, "Stop").click().run()
        assert job2.wait(60) and job2.snapshot().state == "finished"
    finally:
        job1.stop()
        job1.wait(20)


def test_device_selector_explains_a_missing_device():
    at = run_page(device="cuda")
    if torch.cuda.is_available():
        assert "no CUDA device" not in errors_of(at) and not button(at, "Start training").disabled
    else:
        assert "There is no CUDA device on this server; available: CPU." in errors_of(at)
        assert button(at, "Start training").disabled
    at = run_page(device="cpu")
    assert "steps per epoch on CPU (" in text_of(at) and not button(at, "Start training").disabled


def test_a_model_loaded_after_training_is_not_replaced_by_the_finished_run():
    at = run_page(net=TINY, epochs="1", batch="256")
    button(at, "Start training").click().run()
    job = wait_until_done(at)
    at.run()
    assert at.session_state["cnnviz.trained"] is job.snapshot().checkpoint
    torch.manual_seed(1)
    other = Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                  "uploaded", {"test_accuracy": 0.25})
    at = upload(at, "other.pt", save_checkpoint(other))
    at.run()
    at.switch_page("pages/1_Convolution.py").run()
    at.switch_page(PAGE).run()
    assert at.session_state["cnnviz.trained"].dataset == "uploaded"


def test_any_page_can_publish_a_run_that_ended_while_it_was_open():
    from types import SimpleNamespace

    torch.manual_seed(2)
    ckpt = Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                 "fashion-mnist")
    state = SimpleNamespace(done=False, checkpoint=None)
    at = AppTest.from_string("import streamlit as st\nfrom ui.training import publish_finished_job\n"
                             "st.write(f'published: {publish_finished_job()}')\n")
    at.session_state["train.job"] = SimpleNamespace(snapshot=lambda: state)
    at.run()
    assert at.markdown[0].value == "published: False" and "cnnviz.trained" not in at.session_state
    state.done, state.checkpoint = True, ckpt  # the run ends
    at.run()
    assert at.markdown[0].value == "published: True" and at.session_state["cnnviz.trained"] is ckpt
    at.run()
    assert at.markdown[0].value == "published: False"  # once only
