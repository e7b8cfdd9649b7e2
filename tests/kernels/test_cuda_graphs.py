"""GraphedCall: eager where it must be (CPU tensors, non-tensor arguments); captured and replayed
on CUDA, equal to the eager call."""

from __future__ import annotations

import pytest
import torch

from gencli.kernels.cuda_graphs import GraphedCall, wanted


def test_cpu_calls_stay_eager(monkeypatch):
    calls = []

    def fn(x, y):
        calls.append(1)
        return x * 2 + y

    g = GraphedCall(fn)
    x, y = torch.randn(3), torch.randn(3)
    assert torch.equal(g(x, y), x * 2 + y) and len(calls) == 1 and g.graph is None
    assert not wanted(torch.device("cpu"))
    monkeypatch.setenv("GENCLI_CUDA_GRAPHS", "0")
    assert not wanted(torch.device("cuda"))
    monkeypatch.setenv("GENCLI_CUDA_GRAPHS", "1")
    assert wanted(torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replay_equals_eager_on_cuda():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 3, 1)).cuda()
    g = GraphedCall(lambda x: net(x))
    with torch.inference_mode():
        for seed in range(3):
            x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed)).cuda()
            torch.testing.assert_close(g(x).clone(), net(x))
        assert g.graph is not None and not g.failed
        g(torch.randn(4, 3, 8, 8).cuda())  # a new shape is captured anew
        assert g.key[0][0] == (4, 3, 8, 8)
