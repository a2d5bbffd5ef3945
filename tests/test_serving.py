"""ui.serving: the server's own settings, made once at start."""

from __future__ import annotations

import torch

from ui.serving import one_torch_thread


def test_the_server_runs_torch_on_one_thread(monkeypatch):
    """Many sessions' small tensors: a second intra-op thread only spins (see one_torch_thread)."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one_torch_thread(torch)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_omp_num_threads_overrides_it(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        one_torch_thread(torch)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
