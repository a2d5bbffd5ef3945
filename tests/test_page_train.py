"""The training page through AppTest: counts of the built stack, impossible stacks explained
before training, a real (tiny) training run on the server (cnnviz.runs, a worker process) that survives
reruns and page switches and becomes the session's model, reattaching to a run by its link in a new
session (its owner's controls for the student's browser, read-only for anyone else), the server's limits
refused with their message, bad and unknown run links explained, an interrupted run that says so, and
checkpoints downloaded, uploaded back, and refused when crafted. Every test has its own runs folder and
ends the worker processes it started."""

from __future__ import annotations

import io
import os
import time

import pytest
import torch
from apptest_helpers import button, open_page
from streamlit.testing.v1 import AppTest

from cnnviz.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cnnviz.network import build_model
from cnnviz.runs import LocalRunStore, RunRecord, close_shared_backend, shared_backend
from cnnviz.train import History, TrainConfig
from ui.training import BROWSER_KEY, PUBLISHED_KEY, RUN_KEY, STUDENT_KEY, TRAINED_KEY

PAGE = "pages/5_Train_a_CNN.py"
TINY = "conv3x4,relu,maxpool2,flatten,fc10"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def runs_folder(tmp_path, monkeypatch):
    """A runs folder of the test's own, and the server's runs made afresh (ended afterwards)."""
    folder = tmp_path / "runs"
    monkeypatch.setenv("CNNVIZ_RUNS_DIR", str(folder))
    close_shared_backend()
    yield folder
    close_shared_backend()


def run_page(session: dict | None = None, **query) -> AppTest:
    return open_page(PAGE, session=session, **query)


def text_of(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def errors_of(at: AppTest) -> str:
    return "\n".join(e.value for e in at.error)


def shown_run(at: AppTest) -> str:
    """The run id in the page's link."""
    value = at.query_params["run"]
    return value[0] if isinstance(value, list) else value


def wait_for(condition, timeout: float = 60.0, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def wait_until_done(run_id: str, timeout: float = 60.0) -> RunRecord:
    runs = shared_backend()
    wait_for(lambda: runs.get(run_id).done, timeout, f"run {run_id} to end")
    return runs.get(run_id)


def start(at: AppTest) -> str:
    button(at, "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not errors_of(at), errors_of(at)
    return shown_run(at)


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


def test_a_run_trains_on_the_server_survives_reruns_and_page_switches_and_becomes_the_session_model():
    at = run_page(net=TINY, epochs="2", batch="256")
    run_id = start(at)
    runs = shared_backend()
    record = runs.get(run_id)
    assert record.owner == at.session_state[STUDENT_KEY] and record.config.stack == TINY
    assert record.config.epochs == 2 and record.train_images == 6000
    at.run()  # a rerun shows the same run
    assert shown_run(at) == run_id
    at.switch_page("pages/1_Convolution.py").run()
    assert not at.exception
    done = wait_until_done(run_id)
    at.run()  # another page: the finished run's model becomes the session's
    trained = at.session_state[TRAINED_KEY]
    assert isinstance(trained, Checkpoint) and trained is runs.checkpoint(run_id) and trained.stack == TINY
    at.switch_page(PAGE).run()
    assert not at.exception and shown_run(at) == run_id  # the page comes back to its run
    assert done.state == "finished" and trained.test_accuracy == done.test_accuracy > 0.4  # chance: 0.1
    success = "\n".join(s.value for s in at.success)
    assert f"Finished 2 epochs: test accuracy {trained.test_accuracy:.1%}" in success
    assert f"test accuracy **{trained.test_accuracy:.1%}**" in text_of(at)
    assert f"`{run_id}` **finished** · test accuracy {trained.test_accuracy:.1%}" in text_of(at)  # Your runs
    assert len(at.get("download_button")) == 1
    assert not button(at, "Start training").disabled  # ready for the next run
    # the classify page classifies with it
    at.query_params.clear()
    at.query_params["model"] = "session"
    at.switch_page("pages/7_Classify_an_image.py").run()
    assert not at.exception and "**The model you trained**" in text_of(at)


def test_a_link_reattaches_a_new_session_to_its_run_and_only_its_owner_can_stop_it():
    """A reload is a new session with the run's link; the browser's student component tells the id it keeps
    (here set as its state, as the browser would), and the owner's Stop works within a second. Another
    student's session with the same link sees the run read-only."""
    first = run_page(net=TINY, epochs="50", batch="16")
    run_id = start(first)
    student = first.session_state[STUDENT_KEY]
    runs = shared_backend()
    wait_for(lambda: runs.get(run_id).state == "running" and runs.get(run_id).progress is not None, 60,
             "the run training")

    other = run_page(run=run_id)
    assert other.session_state[STUDENT_KEY] != student
    assert "You are watching another student's run" in text_of(other) and "Another student's run" in text_of(other)
    assert not [b for b in other.button if b.label in ("Stop", "Pause", "Resume")]
    assert "Epoch " in "\n".join(p.proto.text for p in other.get("progress"))

    reloaded = run_page(run=run_id)  # the student's reload, before the browser told its id: read-only
    assert not [b for b in reloaded.button if b.label == "Stop"]
    reloaded.session_state[BROWSER_KEY] = {"id": student}  # the student component answers
    reloaded.run()
    assert reloaded.session_state[STUDENT_KEY] == student and f"Your run `{run_id}`" in text_of(reloaded)
    asked = time.perf_counter()
    button(reloaded, "Stop").click().run()
    stopped = wait_until_done(run_id, 10)
    assert time.perf_counter() - asked < 2.0
    assert stopped.state == "stopped" and stopped.message.startswith("Stopped after ")
    assert runs.get(run_id).owner == student and runs.get(run_id).checkpoint_epochs < 50
    reloaded.run()
    assert reloaded.session_state[TRAINED_KEY] is runs.checkpoint(run_id)  # the student's model, in the reload
    other.run()
    assert TRAINED_KEY not in other.session_state  # not the watcher's


def test_a_session_hands_its_runs_over_to_the_id_its_browser_keeps():
    at = run_page(net=TINY, epochs="1", batch="256")
    run_id = start(at)
    browser = "b" * 22
    at.session_state[BROWSER_KEY] = {"id": browser}
    at.run()
    assert at.session_state[STUDENT_KEY] == browser and shared_backend().get(run_id).owner == browser
    tab = run_page(session={BROWSER_KEY: {"id": browser}})  # a second tab of the same browser, no run= link
    assert f"`{run_id}`" in text_of(tab)  # Your runs
    button(tab, "Open").click().run()
    assert shown_run(tab) == run_id
    wait_until_done(run_id)


def test_the_servers_limits_are_refused_with_their_message(monkeypatch):
    monkeypatch.setenv("CNNVIZ_MAX_RUN_MULTIPLY_ADDS", "1e9")
    monkeypatch.setenv("CNNVIZ_MAX_RUNS_PER_STUDENT", "1")
    close_shared_backend()
    at = run_page(epochs="3")  # the default stack: 299,498 multiply-adds per image × 6,000 images × 3 epochs
    assert ("This run is too big for this server: 5.39 billion multiply-adds (299,498 per image × 6,000 images × "
            "3 epochs), and a run may have 1.00 billion. Train fewer epochs, use fewer filters, or pool earlier."
            ) in errors_of(at)
    assert button(at, "Start training").disabled
    at = run_page(net=TINY, epochs="4", batch="16")  # 39,210 × 6,000 × 4 = 0.94 billion
    button(at, "Start training").click().run()
    run_id = shown_run(at)
    assert errors_of(at) == ("You have 1 run going already, the most this server allows at once: stop one "
                             "(Your runs) or wait until one ends.")
    assert button(at, "Start training").disabled
    shared_backend().stop(run_id, at.session_state[STUDENT_KEY])
    wait_until_done(run_id, 10)


def test_a_bad_or_unknown_run_link_is_explained():
    at = run_page(run="../../etc/passwd")
    warnings = "\n".join(w.value for w in at.warning)
    assert ("The link's value run='../../etc/passwd' was ignored: it must be a run's id as the training page "
            "writes it: 8 letters, digits, - or _.") in warnings
    at = run_page(run="abcdEFGH")
    warnings = "\n".join(w.value for w in at.warning)
    assert "There is no run abcdEFGH on this server: runs are kept 24 hours after they end" in warnings
    assert not button(at, "Start training").disabled


def test_a_run_that_a_restart_interrupted_says_so(runs_folder):
    store = LocalRunStore(runs_folder)
    store.create(RunRecord(id="restarted", owner="s" * 22, config=TrainConfig(stack=TINY), data="fashion",
                           dataset="fashion-mnist", source="bundled", classes=tuple(str(k) for k in range(10)),
                           in_shape=(1, 28, 28), train_images=6000, test_images=1000, device="cpu",
                           device_label="CPU (2 threads)", multiply_adds=1, memory_bytes=1, state="running",
                           history=History(test_epoch=[0.0], test_loss=[2.3], test_accuracy=[0.1],
                                           test_seconds=[0.1])))
    at = run_page(run="restarted")  # the server starts (shared_backend) after the record was written
    warnings = "\n".join(w.value for w in at.warning)
    assert ("Interrupted: the server restarted while it trained. No epoch had ended, so no model was kept."
            in warnings)
    assert not [b for b in at.button if b.label == "Stop"]


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
    from test_data import md5, write_idx_folder

    from cnnviz import data

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
    first_id = start(first)
    runs = shared_backend()
    wait_for(lambda: runs.get(first_id).state == "running", 30, "the first run training")
    second_id = start(second)
    assert runs.get(second_id).state == "queued" and runs.get(second_id).queue_position == 1
    info = "\n".join(i.value for i in second.info)
    assert ("**Waiting, 1st in line** for the server's CPU (position 1 in the queue: next in line)") in info
    assert f"`{second_id}` **waiting, 1st in line**" in text_of(second)
    assert "1 training run on CPU, 1 waiting" in text_of(second)
    button(first, "Stop").click().run()
    assert wait_until_done(second_id).state == "finished"


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
    run_id = start(at)
    wait_until_done(run_id)
    at.run()
    assert at.session_state[TRAINED_KEY] is shared_backend().checkpoint(run_id)
    torch.manual_seed(1)
    other = Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                  "uploaded", {"test_accuracy": 0.25})
    at = upload(at, "other.pt", save_checkpoint(other))
    at.run()
    at.switch_page("pages/1_Convolution.py").run()
    at.switch_page(PAGE).run()
    assert at.session_state[TRAINED_KEY].dataset == "uploaded"


def test_any_page_publishes_the_students_run_that_ended_while_it_was_open(runs_folder):
    from cnnviz.runs import new_student_id

    student = new_student_id()
    runs = shared_backend()
    store = runs.store
    store.create(RunRecord(id="tinyrun1", owner=student, config=TrainConfig(stack=TINY), data="fashion",
                           dataset="fashion-mnist", source="bundled", classes=tuple(str(k) for k in range(10)),
                           in_shape=(1, 28, 28), train_images=6000, test_images=1000, device="cpu",
                           device_label="CPU", multiply_adds=1, memory_bytes=1, state="running"))
    at = AppTest.from_string("import streamlit as st\nfrom ui.training import publish_finished_run\n"
                             "st.write(f'published: {publish_finished_run()}')\n")
    at.session_state[RUN_KEY] = "tinyrun1"
    at.session_state[STUDENT_KEY] = student
    at.run()
    assert at.markdown[0].value == "published: False" and TRAINED_KEY not in at.session_state
    torch.manual_seed(2)
    ckpt = Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                 "fashion-mnist", {"epochs": 1.0})
    store.save_checkpoint("tinyrun1", ckpt)
    store.update("tinyrun1", state="finished")  # the run ends
    at.run()
    assert at.markdown[0].value == "published: True"
    assert torch.equal(at.session_state[TRAINED_KEY].state_dict["0.weight"], ckpt.state_dict["0.weight"])
    assert at.session_state[PUBLISHED_KEY] == ("tinyrun1", 1.0)
    at.run()
    assert at.markdown[0].value == "published: False"  # once only
    at.session_state[STUDENT_KEY] = new_student_id()  # someone else's run is never their model
    del at.session_state[PUBLISHED_KEY]
    at.run()
    assert at.markdown[0].value == "published: False"
