#!/usr/bin/python3
"""Compare the C ResNet engine with PyTorch on the CPU, single-threaded.

Builds bench/resnet_bench.c, runs it (--json), then times PyTorch (fp32,
torch.set_num_threads(1), no_grad, eval) on the same ResNet-50 4-band
shapes and inputs: 224x224 and 200x200 native, batch 1 and 16.  Prints one
table: images/s of both, their ratio, the sgemm roofline (the engine's own
GEMMs, from r4_resnet_gemm_plan, replayed through OpenBLAS alone) and the
engine's share of it.  Each round runs every case on both engines in turn
(medians of --runs timed runs after a warm-up); the table shows the medians
over --rounds rounds.

    /usr/bin/python3 bench/resnet_bench.py [--runs 3] [--rounds 3] [--cc cc]

OPENBLAS_NUM_THREADS=1 is set for both sides.  Debian's PyTorch runs its
convolutions through oneDNN (MKL-DNN), not OpenBLAS, so the ratio compares
two different convolution libraries, not just the code around the GEMMs.
OpenBLAS picks its kernels by CPU model; a build older than the CPU falls
back to generic "Prescott" kernels that are several times slower (the table
header shows the kernels in use).  Set OPENBLAS_CORETYPE (e.g. SkylakeX,
Haswell) in the environment to override, for this bench and for the
PostgreSQL server alike.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = sorted(p.name for p in (ROOT / "src" / "core").glob("*.c"))  # every core source, as make unit links them
CASES = [(224, 224, 1), (224, 224, 16), (200, 200, 1), (200, 200, 16)]


def build(cc: str, out: Path) -> None:
    cmd = [cc, "-std=gnu11", "-O2", "-Wall", "-Wextra", "-Werror", "-I", str(ROOT / "include")]
    cmd += [str(ROOT / "src" / "core" / s) for s in CORE]
    cmd += [str(ROOT / "bench" / "resnet_bench.c"), "-lopenblas", "-lz", "-lm", "-o", str(out)]
    subprocess.run(cmd, check=True)


def run_c(exe: Path, runs: int, env: dict, case):
    """One C bench process for one case; returns (row, info)."""
    H, W, B = case
    text = subprocess.run([str(exe), "--runs", str(runs), "--json", "--case", str(H), str(W), str(B)],
                          check=True, capture_output=True, text=True, env=env).stdout
    lines = text.splitlines()
    return json.loads(lines[1]), json.loads(lines[0])


def torch_model():
    import torch
    sys.path.insert(0, str(ROOT / "tools" / "lib"))
    from rai4eo_tools import resnet_reference as ref

    torch.set_num_threads(1)
    state = ref.random_resnet_state("resnet50", in_chans=4, seed=3)
    return ref.resnet_from_state_dict(state)


def run_torch(model, runs: int, case) -> float:
    """Images/s of PyTorch on one case: median of runs after a warm-up."""
    import torch
    H, W, B = case
    x = torch.randn(B, 4, H, W)
    with torch.no_grad():
        model.features(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model.features(x)
            times.append(time.perf_counter() - t0)
    return B / statistics.median(times)


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per case and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds over all cases")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    args = ap.parse_args()

    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    env = dict(os.environ)
    import torch
    model = torch_model()
    c_all = {case: [] for case in CASES}
    t_all = {case: [] for case in CASES}
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "resnet_bench"
        build(args.cc, exe)
        # Alternate the engines case by case, so load from other processes hits both alike.
        for _ in range(args.rounds):
            for case in CASES:
                row, info = run_c(exe, args.runs, env, case)
                c_all[case].append(row)
                t_all[case].append(run_torch(model, args.runs, case))
    c_rows = {}
    torch_rows = {}
    for case in CASES:
        rows = c_all[case]
        c_rows[case] = {k: statistics.median(r[k] for r in rows)
                        for k in ("engine_img_s", "sgemm_img_s", "gflop_per_img", "sgemm_gflops",
                                  "engine_gflops", "work_mb", "gemms")}
        torch_rows[case] = statistics.median(t_all[case])

    print(f"ResNet-50, 4 bands, {info['params']} parameters; {info['openblas']} "
          f"(kernels: {info['core']}), {info['threads']} thread(s)")
    if info["core"].lower() in ("prescott", "katmai", "coppermine", "northwood", "banias"):
        print(f"note: OpenBLAS runs generic {info['core']} kernels on this CPU; "
              "try OPENBLAS_CORETYPE=SkylakeX or Haswell")
    print(f"PyTorch {torch.__version__} (convolutions: oneDNN), 1 thread, fp32, no_grad; medians "
          f"over {args.rounds} alternating rounds of {args.runs} runs; load average before "
          f"{load_before}, after {load_average()}\n")
    head = (f"{'input':<9} {'batch':>5} {'C img/s':>9} {'torch img/s':>11} {'C/torch':>8} "
            f"{'roofline':>9} {'C/roofline':>10} {'sgemm GFLOP/s':>13} {'arena MiB':>9}")
    print(head)
    print("-" * len(head))
    for (H, W, B) in CASES:
        c = c_rows[(H, W, B)]
        t = torch_rows[(H, W, B)]
        print(f"{H}x{W:<5} {B:>5} {c['engine_img_s']:>9.2f} {t:>11.2f} "
              f"{c['engine_img_s'] / t:>7.2f}x {c['sgemm_img_s']:>9.2f} "
              f"{100 * c['engine_img_s'] / c['sgemm_img_s']:>9.1f}% {c['sgemm_gflops']:>13.1f} "
              f"{c['work_mb']:>9.1f}")
    print("\nroofline: images/s if only the engine's sgemm calls took time "
          "(model GFLOP per image: "
          + ", ".join(f"{h}x{w} {c_rows[(h, w, 1)]['gflop_per_img']:.2f}" for (h, w, b) in CASES if b == 1)
          + ")")


if __name__ == "__main__":
    main()
