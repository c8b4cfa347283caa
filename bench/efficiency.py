"""Compute efficiency: measured matmul peak of this CPU and the FLOP/s a backbone step reaches.

Peak: ``torch.mm`` of two ``--n``×``--n`` matrices (default 2048) in float32 and in bfloat16,
``2·n³`` FLOPs each, best of ``--repeats`` after a warm-up (torch with two threads).

Backbone step: forward + backward of a backbone alone on one batch (``small_cnn`` width 64,
1×28×28, batch 256 as in the ``simclr-kmeans`` MNIST preset; ``resnet18_cifar``, 3×32×32, batch
``--resnet-batch``), loss = mean of squared features. FLOPs come from
``torch.utils.flop_counter.FlopCounterMode`` on one forward + backward (convolutions and matmuls
only; element-wise ops, BatchNorm and the optimizer are not counted). Achieved FLOP/s = counted
FLOPs / best wall time; the fraction is of the measured peak of the same dtype (fp32 step vs fp32
matmul, bf16-autocast step vs bf16 matmul; bf16 only on a CPU with bf16 instructions, else one
small emulated bf16 matmul is timed against fp32 to show why). The peak matmuls and the steps
are run round-robin in every repetition, so load drift of the shared machine hits them alike.

    python bench/efficiency.py --quick

Prints a markdown table and writes ``bench/results/efficiency.json``.
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    bf16_emulation_probe,
    environment,
    finish,
    fmt,
    load_line,
    median,
    pct,
    precisions,
    setup,
    table,
    write_json,
)

from corekit.components.backbones import resnet18_cifar, small_cnn  # noqa: E402

setup()

DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def matmul_case(n: int, dtype: torch.dtype) -> tuple[Callable[[], Any], float]:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    return (lambda: torch.mm(a, b)), 2.0 * n ** 3


def backbone_case(name: str, batch: int, precision: str,
                  channels_last: bool) -> tuple[Callable[[], Any], float, dict[str, Any]]:
    torch.manual_seed(0)
    if name == "small_cnn":
        model, shape = small_cnn(1, width=64, out_dim=128), (batch, 1, 28, 28)
    else:
        model, shape = resnet18_cifar(3), (batch, 3, 32, 32)
    model.train()
    x = torch.rand(*shape)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = DTYPES[precision]

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(x)
        out.float().pow(2).mean().backward()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    flops = float(counter.get_total_flops())
    params = sum(p.numel() for p in model.parameters())
    info = {"backbone": name, "batch": batch, "precision": precision,
            "channels_last": channels_last, "input": list(shape), "parameters": params,
            "flops_per_step": flops, "flops_per_image": flops / batch}
    return step, flops, info


def run(args: argparse.Namespace) -> dict[str, Any]:
    cases: list[dict[str, Any]] = []
    dtypes = precisions()
    for precision in dtypes:
        fn, flops = matmul_case(args.n, torch.float32 if precision == "fp32" else torch.bfloat16)
        cases.append({"kind": "matmul", "precision": precision, "n": args.n, "fn": fn,
                      "flops": flops})
    for name in args.backbones:
        batch = args.small_batch if name == "small_cnn" else args.resnet_batch
        layouts = [False, True] if name != "small_cnn" and not args.quick else [False]
        for precision, cl in [(p, cl) for cl in layouts for p in dtypes]:
            fn, flops, info = backbone_case(name, batch, precision, cl)
            cases.append({"kind": "step", **info, "fn": fn, "flops": flops})
    for case in cases:
        case["fn"]()
        case["seconds"] = []
    for rep in range(args.repeats):
        shift = rep % len(cases)
        for case in cases[shift:] + cases[:shift]:
            t0 = time.perf_counter()
            case["fn"]()
            case["seconds"].append(time.perf_counter() - t0)
    peaks = {}
    for case in cases:
        del case["fn"]
        case["best_seconds"] = min(case["seconds"])
        case["median_seconds"] = median(case["seconds"])
        case["flops_per_second"] = case["flops"] / case["best_seconds"]
        case["flops_per_second_median"] = case["flops"] / case["median_seconds"]
        if case["kind"] == "matmul":
            peaks[case["precision"]] = case["flops_per_second"]
    for case in cases:
        if case["kind"] == "step":
            case["fraction_of_peak"] = case["flops_per_second"] / peaks[case["precision"]]
            case["fraction_of_fp32_peak"] = case["flops_per_second"] / peaks["fp32"]
            case["images_per_second"] = case["batch"] / case["best_seconds"]
    emulated = None if "bf16" in dtypes else bf16_emulation_probe()
    return {"peak_flops_per_second": peaks, "cases": cases, "bf16_emulation": emulated}


def tables(result: dict[str, Any]) -> str:
    peaks = result["peak_flops_per_second"]
    rows = [[f"matmul {c['n']}×{c['n']}", c["precision"], fmt(c["flops"] / 1e9),
             f"{1000 * c['best_seconds']:.1f}", f"{1000 * c['median_seconds']:.1f}",
             fmt(c["flops_per_second"] / 1e9), "100% (peak)"]
            for c in result["cases"] if c["kind"] == "matmul"]
    for c in result["cases"]:
        if c["kind"] != "step":
            continue
        label = f"{c['backbone']} b{c['batch']} fwd+bwd" + (" CL" if c["channels_last"] else "")
        rows.append([label, c["precision"], fmt(c["flops"] / 1e9),
                     f"{1000 * c['best_seconds']:.1f}", f"{1000 * c['median_seconds']:.1f}",
                     fmt(c["flops_per_second"] / 1e9),
                     f"{pct(c['fraction_of_peak'])} of {c['precision']} peak"])
    if "bf16" in peaks:
        head = (f"Measured peak: fp32 {fmt(peaks['fp32'] / 1e9)} GFLOP/s, bf16 "
                f"{fmt(peaks['bf16'] / 1e9)} GFLOP/s (bf16/fp32 = "
                f"{peaks['bf16'] / peaks['fp32']:.2f}).")
    else:
        probe = result["bf16_emulation"]
        head = (f"Measured peak: fp32 {fmt(peaks['fp32'] / 1e9)} GFLOP/s. bf16 not timed: this "
                f"CPU has no bf16 instructions, and a {probe['n']}² bf16 matmul took "
                f"{probe['bf16_over_fp32']:.0f}× the fp32 time (torch emulates bf16).")
    return head + "\n\n" + table(["case", "dtype", "GFLOP", "best ms", "median ms",
                                  "GFLOP/s (best)", "of peak"], [list(map(str, r)) for r in rows],
                                 "llrrrrr")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="3 repeats, ResNet batch 8, no channels_last")
    p.add_argument("--n", type=int, default=2048, help="matmul size")
    p.add_argument("--repeats", type=int, help="timed runs of each case (default 6; quick 3)")
    p.add_argument("--backbones", nargs="+", default=["small_cnn", "resnet18_cifar"])
    p.add_argument("--small-batch", type=int, default=256)
    p.add_argument("--resnet-batch", type=int, help="default 64 (quick 8)")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    a.repeats = a.repeats or (3 if a.quick else 6)
    a.resnet_batch = a.resnet_batch or (8 if a.quick else 64)
    return a


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    env = environment(script="efficiency", quick=args.quick)
    result = run(args)
    finish(env)
    payload = {"environment": env, "settings": {k: v for k, v in vars(args).items() if k != "out"},
               **result}
    path = write_json("efficiency", payload, args.out)
    print(f"\n## Compute efficiency ({load_line(env)})\n")
    print(tables(result) + "\n")
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
