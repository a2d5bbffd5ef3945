"""The engine (cnnviz/) never imports streamlit: a GPU machine or a worker process has torch but no
streamlit. Every module is imported in a fresh interpreter in which `import streamlit` fails."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import cnnviz

ROOT = Path(__file__).resolve().parent.parent

BLOCK_STREAMLIT = """
import importlib, sys
class NoStreamlit:
    def find_spec(self, name, path=None, target=None):
        if name == "streamlit" or name.startswith("streamlit."):
            raise ImportError("streamlit is not available here (the engine must not need it)")
sys.meta_path.insert(0, NoStreamlit())
for name in sys.argv[1:]:
    importlib.import_module(name)
assert not any(m == "streamlit" or m.startswith("streamlit.") for m in sys.modules)
print(len(sys.argv) - 1)
"""


def engine_modules() -> list[str]:
    return sorted(f"cnnviz.{m.name}" for m in pkgutil.iter_modules(cnnviz.__path__))


def test_every_engine_module_imports_without_streamlit():
    modules = engine_modules()
    assert len(modules) >= 20 and "cnnviz.conv" in modules and "cnnviz.train" in modules
    done = subprocess.run([sys.executable, "-c", BLOCK_STREAMLIT, *modules], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(len(modules))


def test_the_blocker_really_blocks():
    # The check above would pass vacuously if the blocker did nothing: a module that needs streamlit fails.
    done = subprocess.run([sys.executable, "-c", BLOCK_STREAMLIT, "ui.show"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0 and "streamlit is not available here" in done.stderr
