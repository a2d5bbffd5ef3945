"""The deployment past one machine (deploy/): its files hold together, and the real thing runs on
localhost: Debian's redis-server and nginx (deploy/nginx.conf with the upstreams' ports put in), two
`streamlit run app.py` servers sharing Redis and a cookie secret, and one RQ worker.

On it: students spread over both app servers and each stays on one; a presenter's room on one server
drives a student on the other; a run started in a browser on one server trains on the worker and its
model classifies on the other server; a worker killed mid-run leaves its run failed, not running.
Locally the test skips when redis-server, nginx or chromium is missing; in CI (CI=1) it fails instead.
"""

from __future__ import annotations

import concurrent.futures
import http.cookiejar
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from browser_helpers import VIEWPORT, click_text, in_ci, wait_for_app, wait_for_text
from server import REPO_ROOT, free_port

DEPLOY = REPO_ROOT / "deploy"
STACK = "conv3x4,relu,maxpool2,flatten,fc10"  # 7,890 parameters
UPSTREAM_HEADER = "X-Cnnviz-Upstream"


def _binary(name: str, fallback: str) -> str:
    found = shutil.which(name) or (fallback if os.access(fallback, os.X_OK) else None)
    if found is None:
        if in_ci():
            pytest.fail(f"CI is set, and {name} is missing: apt-get install {name}", pytrace=False)
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return found


def local_nginx_conf(text: str, *, listen: int, upstreams: list[int], prefix: Path) -> str:
    """deploy/nginx.conf for this machine: listening on 127.0.0.1:`listen`, the app servers on the
    `upstreams` ports, everything nginx writes under `prefix`, in the foreground, and each answer
    naming the app server that gave it (UPSTREAM_HEADER). Every change must find its place once: a
    changed deploy/nginx.conf fails here rather than being tested half."""

    def once(pattern: str, replacement: str, source: str) -> str:
        result, count = re.subn(pattern, lambda _: replacement, source, flags=re.MULTILINE)
        assert count == 1, f"deploy/nginx.conf: expected one match of {pattern!r}, found {count}"
        return result

    servers = "".join(f"        server 127.0.0.1:{port};\n" for port in upstreams)
    text = once(r"^(\s*server app1:8501;.*\n)(\s*server app\d+:8501;.*\n)*", servers, text)
    text = once(r"^\s*listen 80;", f"        listen 127.0.0.1:{listen};", text)
    text = once(r"^events \{\}", f"daemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n\n"
                "events {}", text)
    temporary = "".join(f"    {kind}_temp_path {prefix}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = once(r"^http \{\n", f"http {{\n    access_log {prefix}/access.log;\n{temporary}", text)
    return once(r"^(\s*)proxy_pass http://cnnviz;",
                f"            proxy_pass http://cnnviz;\n            add_header {UPSTREAM_HEADER} $upstream_addr always;",
                text)


def _nginx_prefix() -> Path:
    """A folder for nginx's files that its worker processes (user nobody when started as root) can use."""
    prefix = Path(tempfile.mkdtemp(prefix="cnnviz-nginx-"))
    prefix.chmod(0o755)
    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / kind).mkdir(mode=0o777)
        (prefix / kind).chmod(0o777)
    return prefix


# ---------------------------------------------------------------------------- the files


def test_the_nginx_configuration_is_valid_for_nginx():
    nginx = _binary("nginx", "/usr/sbin/nginx")
    prefix = _nginx_prefix()
    try:
        conf = prefix / "nginx.conf"
        conf.write_text(local_nginx_conf((DEPLOY / "nginx.conf").read_text(), listen=free_port(),
                                         upstreams=[free_port(), free_port()], prefix=prefix))
        checked = subprocess.run([nginx, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
                                 check=False, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        assert "syntax is ok" in checked.stderr and "test is successful" in checked.stderr
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


def test_the_compose_file_runs_two_app_servers_nginx_redis_and_a_gpu_worker():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"redis", "app1", "app2", "nginx", "worker-gpu"} <= set(services)
    upstreams = re.findall(r"^\s*server (\w+):(\d+);", (DEPLOY / "nginx.conf").read_text(), flags=re.MULTILINE)
    assert upstreams == [("app1", "8501"), ("app2", "8501")]  # nginx reaches each app server by its name
    for name in ("app1", "app2", "worker-gpu", "worker-cpu"):
        environment = services[name]["environment"]
        assert environment["CNNVIZ_REDIS_URL"] == "redis://redis:6379/0"
        assert environment["STREAMLIT_SERVER_COOKIE_SECRET"].startswith("${STREAMLIT_SERVER_COOKIE_SECRET:?")
        assert services[name]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert (REPO_ROOT / services["app1"]["build"]["context"].replace("..", ".")).resolve() == REPO_ROOT
    assert "8501" in (DEPLOY / "Dockerfile").read_text()
    assert services["nginx"]["volumes"] == ["./nginx.conf:/etc/nginx/nginx.conf:ro"]
    assert services["nginx"]["ports"] == ["80:80"]
    gpu = services["worker-gpu"]
    assert gpu["command"][:2] == ["rq", "worker"] and gpu["command"][-1] == "cnnviz-cuda"
    assert gpu["command"][gpu["command"].index("--worker-class") + 1] == "cnnviz.runs_redis.RunWorker"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert services["worker-cpu"]["command"][-1] == "cnnviz-cpu"
    assert "noeviction" in services["redis"]["command"]  # run records and RQ's queues are never evicted
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile and '"streamlit", "run", "app.py"' in dockerfile


# ---------------------------------------------------------------------------- the real thing


class Nginx:
    def __init__(self, binary: str, upstreams: list[int]):
        self.prefix = _nginx_prefix()
        self.port = free_port()
        conf = self.prefix / "nginx.conf"
        conf.write_text(local_nginx_conf((DEPLOY / "nginx.conf").read_text(), listen=self.port,
                                         upstreams=upstreams, prefix=self.prefix))
        self.process = subprocess.Popen([binary, "-p", str(self.prefix), "-e", str(self.prefix / "error.log"),
                                         "-c", str(conf)], stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2).read()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"nginx did not start: {self.log()}")
                time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)
        shutil.rmtree(self.prefix, ignore_errors=True)


def _student(url: str) -> tuple[str, list[str]]:
    """A student without a browser: the page, then the health check a few times (as Streamlit's page does
    on every (re)connect); the app servers that answered, first the page's."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    answered = []
    for path in ["/", *["/_stcore/health"] * 6]:
        with opener.open(url + path, timeout=30) as response:
            response.read()
            answered.append(response.headers[UPSTREAM_HEADER])
    return answered[0], answered[1:]


def _pin(context, url: str, avoid: str | None = None) -> str:
    """Give a browser context a route cookie for an app server other than `avoid`; the server's address."""
    for _ in range(40):
        context.clear_cookies()
        context.request.get(f"{url}/_stcore/health")  # the route cookie
        upstream = context.request.get(f"{url}/_stcore/health").headers[UPSTREAM_HEADER.lower()]
        if upstream != avoid:
            return upstream
    raise AssertionError(f"every route led to {avoid}")


def _wait(condition, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.browser
def test_two_app_servers_behind_nginx_share_rooms_and_runs_trained_by_a_worker(
        redis_server, fresh_server, rq_workers, chromium_browser, tmp_path):
    nginx_binary = _binary("nginx", "/usr/sbin/nginx")
    environment = {"CNNVIZ_REDIS_URL": redis_server, "CNNVIZ_RUNS_DIR": str(tmp_path / "runs"),
                   "STREAMLIT_SERVER_COOKIE_SECRET": "a secret the two app servers share", "OMP_NUM_THREADS": "1"}
    worker = rq_workers(redis_server, "cnnviz-cpu", env={"OMP_NUM_THREADS": "1"})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        servers = list(pool.map(lambda _: fresh_server(env=environment), range(2)))
    addresses = {f"127.0.0.1:{s.port}" for s in servers}
    proxy = Nginx(nginx_binary, [s.port for s in servers])
    contexts = []

    def context(**options):
        made = chromium_browser.new_context(viewport=dict(VIEWPORT), **options)
        made.set_default_timeout(30_000)
        contexts.append(made)
        return made

    try:
        # (a) Students spread over both app servers, and each stays on one (its websocket and uploads
        # must reach the server that holds its session), however often Streamlit renews its own cookie.
        students = [_student(proxy.url) for _ in range(16)]
        assert all(len(set(health)) == 1 for _, health in students), students
        assert {health[0] for _, health in students} == addresses

        # (d) A room opened by a presenter on one app server drives a student on the other.
        presenter_context, student_context = context(), context()
        presenter_server = _pin(presenter_context, proxy.url)
        student_server = _pin(student_context, proxy.url, avoid=presenter_server)
        presenter, student = presenter_context.new_page(), student_context.new_page()
        presenter.goto(f"{proxy.url}/Convolution")
        wait_for_app(presenter)
        click_text(presenter, "Lecture hall")
        click_text(presenter, "Open a room")
        presenter.wait_for_selector("[data-part=room-text][data-code]", state="attached")
        code = presenter.locator("[data-part=room-text]").first.get_attribute("data-code")
        student.goto(f"{proxy.url}/r/{code}")
        wait_for_app(student)
        assert student.url.endswith(f"/Convolution?room={code}")
        click_text(presenter, "2. Pooling and strides")
        moved = time.monotonic()
        student.wait_for_url(lambda url: url.endswith(f"/Pooling?room={code}"), timeout=15_000)
        print(f"the student on {student_server} followed the presenter on {presenter_server} "
              f"after {time.monotonic() - moved:.2f} s")
        wait_for_text(student, "Pooling and strides")
        presenter_context.close()
        student_context.close()

        # (b) A run started in a browser on one app server trains on the worker; its model is the
        # student's on the classify page of the other app server.
        trainer_context = context()
        first_server = _pin(trainer_context, proxy.url)
        page = trainer_context.new_page()
        page.goto(f"{proxy.url}/Train_a_CNN?net={STACK}&epochs=1&batch=256")
        wait_for_app(page)
        click_text(page, "Start training")
        wait_for_text(page, "Finished 1 epoch: test accuracy", timeout_ms=120_000)
        run_id = re.search(r"[?&]run=([\w-]+)", page.url).group(1)
        other_context = context(storage_state=trainer_context.storage_state())  # the same student's browser
        second_server = _pin(other_context, proxy.url, avoid=first_server)
        page = other_context.new_page()
        page.goto(f"{proxy.url}/Train_a_CNN?run={run_id}")
        wait_for_app(page)
        wait_for_text(page, "Finished 1 epoch: test accuracy")
        click_text(page, "7. Classify an image")
        wait_for_app(page)
        page.get_by_label("Model").click()
        page.get_by_role("option", name="The model you trained on the Train a CNN page").click()
        wait_for_text(page, "The model you trained")
        wait_for_text(page, "7,890 parameters")
        print(f"run {run_id}: started on {first_server}, its model classifying on {second_server}")

        # (c) A worker killed mid-run: the run shows failed (its heartbeat expires), on any app server.
        from cnnviz.runs import Limits, RunRequest, Runs, new_student_id
        from cnnviz.runs_redis import HEARTBEAT_TTL_S, RedisRunStore, RQExecutor
        from cnnviz.train import TrainConfig

        store = RedisRunStore.from_url(redis_server)
        runs = Runs(store, RQExecutor(store), Limits())
        long = runs.start(new_student_id(), RunRequest(TrainConfig(stack=STACK, device="cpu", epochs=30,
                                                                   batch_size=16, threads=1), "fashion", 6000, 1000))
        _wait(lambda: runs.get(long.id).progress is not None, 60, "the long run training")
        horse = int(json.loads(store.redis.hget(f"cnnviz:run:{long.id}", "worker")).rsplit(":", 1)[1])
        os.kill(worker.pid, signal.SIGKILL)  # the worker, then its work horse: as a machine that went away
        os.kill(horse, signal.SIGKILL)
        killed = time.monotonic()
        page.goto(f"{proxy.url}/Train_a_CNN?run={long.id}")
        wait_for_text(page, "stopped answering before the run was done", timeout_ms=(HEARTBEAT_TTL_S + 20) * 1000)
        print(f"the killed worker's run showed failed after {time.monotonic() - killed:.1f} s")
        assert runs.get(long.id).state == "error"
    finally:
        for made in contexts:
            made.close()
        proxy.close()
