"""Issue #23, "a GPU bench": ``bench/gpu.py`` runs its tiny configuration on the CPU, checks
every path it can here, says why it skips the CUDA-only ones, and writes its JSON."""

import json

import pytest

from bench import gpu


def test_gpu_bench_tiny_on_cpu(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPCLUST_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "gpu.json"
    assert gpu.main(["--tiny", "--device", "cpu", "--no-compile", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    status = {c["check"]: c["status"] for c in result["checks"]}
    assert status["fp32"] == status["fp32+channels_last"] == "ok"
    assert status["kmeans torch"] == status["spherical_kmeans"] == "ok"
    assert status["fp16"] == "skipped"
    assert status["kmeans faiss-gpu"] == "skipped"
    for epoch in result["epochs"].values():
        assert epoch["steps"] == 2 and epoch["batch"] == 16
        assert epoch["epoch_seconds"] > 0 and epoch["images_per_second"] > 0
    assert "| hadis cifar10 |" in capsys.readouterr().out


def test_gpu_bench_without_cuda_asks_for_tiny(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert gpu.main([]) == 2
    assert "--tiny" in capsys.readouterr().err


def test_a_failing_check_is_reported_not_raised():
    def broken():
        raise RuntimeError("CUDA error: no kernel image")

    row = gpu.check("fp16", broken)
    assert row["status"] == "failed" and "no kernel image" in row["detail"]
