#!/usr/bin/env python
"""Server CPU of a page's first run in a session: the cost of each student who opens a page.

    python benchmarks/first_run_cpu.py                       # a fresh server; 10 new tabs per page
    python benchmarks/first_run_cpu.py --opens 20 --profile  # and where a first run's time goes (cProfile)
    python benchmarks/first_run_cpu.py --profile --profile-dir /tmp/prof   # keep them: /tmp/prof/<page>/*.prof
    python benchmarks/first_run_cpu.py --url http://127.0.0.1:8501 --pid 1234

Goal (issue 13): a page's first run per session costs the server at most 50 ms of CPU, so that a hall
arriving at once is served in seconds. Each page is opened once untimed (what the process caches on a
page's first visit ever), then `--opens` times in a new tab each, one after another, as a new student
would (classroom.py's Tab: health check, websocket, the first run). The figure is the server process's
CPU time (/proc, every thread: the script run, the websocket, the messages) over those opens, divided by
their number; /proc counts in 10 ms ticks, so more opens give finer figures. The script exits 1 when a
page is over the goal.

--profile runs the server under a small launcher that wraps every script run in cProfile (in the script
thread, where a page's own work happens) and prints, per page, the functions that took the most time
over its timed opens (cumulative, per open). The profiler slows the server: the CPU figures of a
profiled run are not the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

GOAL_MS = 50.0
PROFILE_ENV = "CNNVIZ_PROFILE_DIR"
PAGES = {"home": "", "convolution": "Convolution", "pooling": "Pooling", "stacking": "Stacking_layers",
         "learn": "What_models_learn", "train": "Train_a_CNN", "vgg": "VGG16_explorer",
         "classify": "Classify_an_image"}


# ----------------------------------------------------------------------- inside the profiled server

def run_profiled_server(streamlit_args: list[str]) -> None:
    """`streamlit run ...` with every script run profiled into $CNNVIZ_PROFILE_DIR, one file per run
    (named by the page the run was asked for: its name on a tab's first run, else its hash)."""
    from streamlit.runtime.scriptrunner import script_runner
    from streamlit.web import cli

    folder = Path(os.environ[PROFILE_ENV])
    original = script_runner.ScriptRunner._run_script
    count = iter(range(10**9))

    def profiled(self, rerun_data):
        profile = cProfile.Profile()
        profile.enable()
        try:
            return original(self, rerun_data)
        finally:
            profile.disable()
            page = rerun_data.page_name or rerun_data.page_script_hash or "home"
            profile.dump_stats(folder / f"{page.replace('/', '_')}.{os.getpid()}.{next(count)}.prof")

    script_runner.ScriptRunner._run_script = profiled
    sys.argv = ["streamlit", *streamlit_args]
    cli.main()


# ------------------------------------------------------------------------------------- measuring

async def open_tab(url: str, path: str, timeout: float):
    from classroom import RunFailed, Tab

    tab = Tab(url, "first-run", timeout)
    try:
        run = await tab.open(path)
    finally:
        await tab.close()
    if run.exceptions:
        raise RunFailed(f"/{path}: {run.exceptions}")
    return run


async def measure(url: str, pid: int, opens: int, timeout: float, profile_dir: Path | None) -> dict[str, dict]:
    """Per page: server CPU per first run (ms), the wall time of an open, and (profiled) its stats.

    One more tab stays open on the home page throughout, as the rest of a hall would: Streamlit drops
    its compiled scripts whenever the last session disconnects (websocket_session_manager.py,
    disconnect_session), so tabs opened strictly one after another would each recompile the page."""
    from classroom import Tab, cpu_seconds

    anchor = Tab(url, "anchor", timeout)
    await anchor.open(PAGES["home"])
    try:
        return await _measure_pages(url, pid, opens, timeout, profile_dir, cpu_seconds)
    finally:
        await anchor.close()


async def _measure_pages(url, pid, opens, timeout, profile_dir, cpu_seconds) -> dict[str, dict]:
    figures = {}
    for name, path in PAGES.items():
        await open_tab(url, path, timeout)  # the page's first visit ever: the process's own caches
        await asyncio.sleep(0.3)
        if profile_dir is not None:
            for old in profile_dir.glob("*.prof"):
                old.unlink()
        walls = []
        before = cpu_seconds(pid)
        for _ in range(opens):
            run = await open_tab(url, path, timeout)
            walls.append(run.seconds)
        await asyncio.sleep(0.3)  # the server finishing with the closed connections counts too
        cpu_ms = (cpu_seconds(pid) - before) * 1e3 / opens
        figures[name] = {"cpu_ms": cpu_ms, "ratio": cpu_ms / GOAL_MS, "wall_ms": sorted(walls)[len(walls) // 2] * 1e3}
        if profile_dir is not None:
            kept = profile_dir / name
            kept.mkdir(exist_ok=True)
            files = [f.rename(kept / f.name) for f in sorted(profile_dir.glob("*.prof"))]
            figures[name]["stats"] = top_functions(files, opens)
    return figures


def top_functions(files: list[Path], opens: int, lines: int = 14) -> str:
    """The functions with the most cumulative time over the profiled runs, per open."""
    if not files:
        return "  (no profile: no script run was recorded)\n"
    out = io.StringIO()
    stats = pstats.Stats(*map(str, files), stream=out)
    total = stats.total_tt
    stats.sort_stats("cumulative").print_stats(lines)
    head = f"  script thread: {total * 1e3 / opens:.1f} ms per open (profiled, so slower than the real run)\n"
    body = out.getvalue()
    table = body[body.index("   ncalls"):] if "   ncalls" in body else body
    return head + "".join(f"  {line}\n" for line in table.splitlines() if line.strip())


def report(figures: dict[str, dict], opens: int, profiled: bool) -> bool:
    print(f"\nfirst run of each page in a new tab: server CPU per open (mean of {opens}), goal {GOAL_MS:.0f} ms"
          + (" — PROFILED: slower than the real server" if profiled else ""))
    print(f"{'page':<12} {'CPU ms':>8} {'ratio':>7} {'wall ms':>8}")
    for name, figure in figures.items():
        verdict = "ok" if figure["ratio"] <= 1 else "OVER"
        print(f"{name:<12} {figure['cpu_ms']:8.1f} {figure['ratio']:6.2f}x {figure['wall_ms']:8.0f}  {verdict}")
    if profiled:
        for name, figure in figures.items():
            print(f"\n{name}: the most cumulative time in the script thread, over {opens} opens")
            print(figure["stats"], end="")
    worst = max(figures, key=lambda n: figures[n]["ratio"])
    met = figures[worst]["ratio"] <= 1
    print(f"\nworst: {worst} {figures[worst]['cpu_ms']:.1f} ms ({figures[worst]['ratio']:.2f}x the goal): "
          + ("goal met" if met else "goal NOT met"))
    return met


def start_server(profile_dir: Path | None):
    from server import StreamlitServer

    class Server(StreamlitServer):
        def command(self, port: int) -> list[str]:
            command = super().command(port)
            if profile_dir is None:
                return command
            return [sys.executable, str(Path(__file__).resolve()), "--as-server", *command[3:]]  # after "-m streamlit"

    server = Server(ROOT / "app.py", env={PROFILE_ENV: str(profile_dir)} if profile_dir else None)
    server.start()
    return server


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--as-server"]:
        run_profiled_server(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opens", type=int, default=10, help="timed first runs per page (new tabs)")
    parser.add_argument("--profile", action="store_true", help="cProfile the script runs: where the time goes")
    parser.add_argument("--profile-dir", type=Path, help="keep the profiles here (DIR/<page>/*.prof, for pstats)")
    parser.add_argument("--url", help="a running server (127.0.0.1) instead of starting one")
    parser.add_argument("--pid", type=int, help="the running server's pid (its CPU time)")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    if args.url and (args.profile or not args.pid):
        parser.error("--url needs --pid, and can't be profiled (--profile starts its own server)")
    from classroom import check_local

    with tempfile.TemporaryDirectory(prefix="cnnviz-profile-") as folder:
        if args.profile_dir:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
        profile_dir = (args.profile_dir or Path(folder)).resolve() if args.profile else None
        server = None
        try:
            if args.url:
                check_local(args.url)
                url, pid = args.url, args.pid
            else:
                started = time.perf_counter()
                server = start_server(profile_dir)
                url, pid = server.url, server.process.pid
                print(f"server {url} (pid {pid}) up and warmed in {time.perf_counter() - started:.1f} s; "
                      f"load average {os.getloadavg()[0]:.2f}")
            figures = asyncio.run(measure(url, pid, args.opens, args.timeout, profile_dir))
        finally:
            if server is not None:
                server.close()
        return 0 if report(figures, args.opens, args.profile) else 1


if __name__ == "__main__":
    sys.exit(main())
