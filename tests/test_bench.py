"""The benchmark harness: FLOP counting, the CLI table/JSON/plot, the peer script."""

import json
import statistics

import numpy as np
import pytest

from mlp_xp.backends import get_backend, gpu_probe
from mlp_xp.cli import main
from mlp_xp.cli.bench import _speedups, format_table, time_augmentation, training_flops

from .test_scripts import load


def test_training_flops_by_hand():
    # forward 2*(4*3 + 3*2) = 36; dE/dW the same 36; dE/dx only for the 2nd layer: 2*3*2 = 12
    assert training_flops([4, 3, 2]) == 84
    per_sample = training_flops([784, 300, 100, 10])
    assert per_sample == 2 * 266200 * 2 + 2 * (300 * 100 + 100 * 10)


def test_bench_cli_json_table_and_plot(tmp_path, capsys):
    plot = tmp_path / "bench.png"
    assert (
        main(
            [
                *"bench --samples 512 --batch-sizes 64,256 --repeats 1 --json --plot".split(),
                str(plot),
                "--no-augment-cost",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    result = json.loads(captured.out.strip().splitlines()[-1])
    assert result["flops_per_epoch"] == 512 * training_flops([784, 300, 100, 10])
    rate = {d["backend"]: d["matmul_gflops"] for d in result["devices"]}
    rows = result["results"]
    assert [r["batch_size"] for r in rows if r["backend"] == "numpy"] == [64, 256]
    for r in rows:  # each figure is what its definition says
        assert r["samples_per_second"] == pytest.approx(512 / r["epoch_seconds"])
        assert r["gflops"] == pytest.approx(result["flops_per_epoch"] / r["epoch_seconds"] / 1e9)
        assert r["fraction_of_matmul"] == pytest.approx(r["gflops"] / rate[r["backend"]])
        assert f"{r['epoch_seconds']:9.3f}" in captured.err  # the table shows it
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if not gpu_probe().ok:
        assert "gpu" in result["unavailable"] and "gpu: not available" in captured.err


def test_the_augmentation_cost_alternates_plain_and_augmented_epochs(monkeypatch):
    """Each trainer's epochs interleave with the other's; the figure is the two medians."""
    from mlp_xp.train import Trainer

    order, run_epoch = [], Trainer.run_epoch

    def recorded(self):
        order.append(self.config.augment)
        return run_epoch(self)

    monkeypatch.setattr(Trainer, "run_epoch", recorded)
    r = np.random.default_rng(0)
    X, y = r.random((256, 784), dtype=np.float32), r.integers(0, 10, 256)
    cost = time_augmentation(get_backend("cpu"), X, y, batch_size=64, repeats=3)
    assert order == ["none", "affine"] * 4  # a warm-up each, then three timed
    assert len(cost["all_epoch_seconds"]) == len(cost["all_plain_epoch_seconds"]) == 3
    assert cost["epoch_seconds"] == statistics.median(cost["all_epoch_seconds"])
    assert cost["plain_epoch_seconds"] == statistics.median(cost["all_plain_epoch_seconds"])
    table = format_table(
        {"network": "n", "data": "d", "results": [], "devices": [], "unavailable": {},
         "speedup": {}, "augment_cost": [cost]}
    )  # fmt: skip
    extra = cost["epoch_seconds"] - cost["plain_epoch_seconds"]
    assert f"affine augmentation on numpy, batch 64: {cost['epoch_seconds']:.3f} s/epoch" in table
    assert f"({extra:+.3f} s, {100 * extra / cost['plain_epoch_seconds']:+.0f}% over plain" in table


def test_speedup_and_crossover_from_rows():
    rows = [
        {
            "backend": b,
            "device": b,
            "batch_size": bs,
            "epoch_seconds": t,
            "samples_per_second": 1,
            "gflops": 1,
            "fraction_of_matmul": 0.5,
            "host_peak_rss_bytes": 2**20,
        }
        for b, times in (("numpy", (1.0, 2.0, 4.0)), ("cupy", (2.0, 1.0, 0.5)))
        for bs, t in zip((32, 128, 512), times, strict=True)
    ]
    speedup, crossover = _speedups(rows)
    assert speedup == {"32": 0.5, "128": 2.0, "512": 8.0} and crossover == 128
    table = format_table(
        {
            "network": "n",
            "data": "d",
            "results": rows,
            "devices": [],
            "unavailable": {},
            "speedup": speedup,
            "crossover_batch_size": crossover,
        }
    )
    assert "the CPU wins below batch 128" in table


def test_bench_rejects_unknown_devices(capsys):
    assert main(["bench", "--devices", "cpu,tpu"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


@pytest.mark.parametrize("devices", [",", "", " , "])
def test_bench_rejects_an_empty_device_list(capsys, devices):
    assert main(["bench", "--devices", devices]) == 2
    assert "--devices must be a comma list of cpu, gpu or gpu:N" in capsys.readouterr().err


def test_compare_peers_runs_mlp_xp_beside_its_matmul_floor(capsys):
    result = load("compare_peers").main("--samples 512 --repeats 1 --peers none".split())
    rows = {r["framework"]: r for r in result["rows"]}
    assert list(rows) == ["mlp_xp", "8 matmuls only"]
    floor = rows["8 matmuls only"]
    assert floor["mlp_xp_time_ratio"] == pytest.approx(
        rows["mlp_xp"]["epoch_seconds"] / floor["epoch_seconds"]
    )
    assert "interleaved epochs" in capsys.readouterr().out
