#!/usr/bin/python3
"""Compare the C ViT engine (fp32 and bf16) with PyTorch on the CPU, single-threaded.

Builds bench/vit_bench.c, runs it (--json) once per precision, and times
PyTorch (torch.set_num_threads(1), no_grad, eval) on the same ViT-S/16
4-band model shapes and inputs, in fp32 and under
torch.autocast('cpu', dtype=torch.bfloat16): 224x224 and 200x200 native,
batch 1 and 16.  Prints one table per precision: images/s of the engine and
of PyTorch, their ratio, the roofline and the engine's share of it.  The
fp32 roofline is the engine's own GEMMs replayed through OpenBLAS sgemm
alone; the bf16 roofline the same GEMMs replayed through r4_gemm_bf16, the
way the bf16 engine runs them (every operand but A packed beforehand).  The header also gives the peak of a bare vdpbf16ps loop on
registers, and the load averages before and after.
Each round runs every case on the four engines in turn (rai4eo fp32,
PyTorch fp32, rai4eo bf16, PyTorch bf16, so load from other processes hits
all alike; medians of --runs timed runs after a warm-up); the table shows
the medians over --rounds rounds.

    /usr/bin/python3 bench/vit_bench.py [--runs 3] [--rounds 3] [--cc cc] [--case 200x200x16]

OPENBLAS_NUM_THREADS=1 is set for both sides.  Debian's PyTorch does its
fp32 matrix products through the same OpenBLAS, so the fp32 ratio measures
everything around the GEMMs; its bf16 autocast runs oneDNN's bf16 kernels.
OpenBLAS picks its kernels by CPU model; a build older than the CPU falls
back to generic "Prescott" kernels that are several times slower (the
table header shows the kernels in use).  Set OPENBLAS_CORETYPE (e.g.
SkylakeX, Haswell) in the environment to override, for this bench and for
the PostgreSQL server alike; without it this script sets SkylakeX on a CPU
with AVX-512 (what scripts/lib.sh does for the server).
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
    cmd += [str(ROOT / "bench" / "vit_bench.c"), "-lopenblas", "-lz", "-lm", "-o", str(out)]
    subprocess.run(cmd, check=True)


def run_c(exe: Path, runs: int, env: dict, case, precision: str):
    """One C bench process for one case; returns (row, info)."""
    H, W, B = case
    text = subprocess.run([str(exe), "--runs", str(runs), "--json", "--case", str(H), str(W), str(B),
                           "--precision", precision],
                          check=True, capture_output=True, text=True, env=env).stdout
    lines = text.splitlines()
    return json.loads(lines[1]), json.loads(lines[0])


def cpu_has_bf16() -> bool:
    with open("/proc/cpuinfo") as f:
        return " avx512_bf16" in f.read()


def torch_model():
    import torch
    sys.path.insert(0, str(ROOT / "tools" / "lib"))
    from rai4eo_tools import vit_reference as ref

    torch.set_num_threads(1)
    state = ref.random_vit_state(embed_dim=384, depth=12, patch_size=16, in_chans=4,
                                 img_size=224, seed=3)
    return ref.vit_from_state_dict(state, num_heads=6)


def run_torch(model, runs: int, case, bf16: bool) -> float:
    """Images/s of PyTorch on one case: median of runs after a warm-up."""
    import contextlib
    import torch
    H, W, B = case
    x = torch.randn(B, 4, H, W)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with torch.no_grad(), ctx:
        model.features(x)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            model.features(x)
            times.append(time.perf_counter() - t0)
    return B / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per case and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds over all cases")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--case", action="append", default=None, metavar="HxWxB",
                    help="only these cases (repeatable), e.g. 200x200x16")
    args = ap.parse_args()
    cases = CASES if not args.case else [tuple(int(v) for v in c.split("x")) for c in args.case]

    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if "OPENBLAS_CORETYPE" not in os.environ and " avx512f" in open("/proc/cpuinfo").read():
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    env = dict(os.environ)
    import torch
    model = torch_model()
    bf16 = cpu_has_bf16()
    precisions = ["fp32", "bf16"] if bf16 else ["fp32"]
    c_all = {(p, case): [] for p in precisions for case in cases}
    t_all = {(p, case): [] for p in precisions for case in cases}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "vit_bench"
        build(args.cc, exe)
        # Alternate the engines case by case, so load from other processes hits all alike.
        for _ in range(args.rounds):
            for case in cases:
                for p in precisions:
                    row, info = run_c(exe, args.runs, env, case, p)
                    row["dpbf16_peak_gflops"] = info["dpbf16_peak_gflops"]
                    c_all[(p, case)].append(row)
                    if p == "fp32":
                        info32 = info
                    t_all[(p, case)].append(run_torch(model, args.runs, case, p == "bf16"))
    load_after = os.getloadavg()
    keys = ("engine_img_s", "sgemm_img_s", "bf16_img_s", "gflop_per_img", "sgemm_gflops", "bf16_gflops",
            "dpbf16_peak_gflops")
    c_rows = {k: {f: statistics.median(r[f] for r in rows) for f in keys} for k, rows in c_all.items()}
    torch_rows = {k: statistics.median(v) for k, v in t_all.items()}
    info = info32

    print(f"ViT-S/16, 4 bands, {info['params']} parameters; {info['openblas']} "
          f"(kernels: {info['core']}), {info['threads']} thread(s)")
    if info["core"].lower() in ("prescott", "katmai", "coppermine", "northwood", "banias"):
        print(f"note: OpenBLAS runs generic {info['core']} kernels on this CPU; "
              "try OPENBLAS_CORETYPE=SkylakeX or Haswell (both sides use OpenBLAS)")
    print(f"PyTorch {torch.__version__}, 1 thread, no_grad; medians over {args.rounds} "
          f"alternating rounds of {args.runs} runs; load average before "
          + "/".join(f"{v:.2f}" for v in load_before) + ", after "
          + "/".join(f"{v:.2f}" for v in load_after))
    if bf16:
        print("bare vdpbf16ps loop (bf16 peak on hot data, median per case): " + ", ".join(
            f"{h}x{w}x{b} {c_rows[('bf16', (h, w, b))]['dpbf16_peak_gflops']:.1f} GFLOP/s" for (h, w, b) in cases))
    else:
        print("no avx512_bf16 on this CPU: fp32 only")
    for p in precisions:
        roof = "sgemm_img_s" if p == "fp32" else "bf16_img_s"
        rgf = "sgemm_gflops" if p == "fp32" else "bf16_gflops"
        print(f"\n{p}: rai4eo {p} against PyTorch "
              + ("fp32" if p == "fp32" else "bf16 autocast")
              + f"; roofline = the engine's GEMMs alone ({'sgemm' if p == 'fp32' else 'r4_gemm_bf16'})")
        head = (f"{'input':<9} {'batch':>5} {'C img/s':>9} {'torch img/s':>11} {'C/torch':>8} "
                f"{'roofline':>9} {'C/roofline':>10} {'GEMM GFLOP/s':>12}")
        print(head)
        print("-" * len(head))
        for case in cases:
            H, W, B = case
            c = c_rows[(p, case)]
            t = torch_rows[(p, case)]
            print(f"{H}x{W:<5} {B:>5} {c['engine_img_s']:>9.2f} {t:>11.2f} "
                  f"{c['engine_img_s'] / t:>7.2f}x {c[roof]:>9.2f} "
                  f"{100 * c['engine_img_s'] / c[roof]:>9.1f}% {c[rgf]:>12.1f}")
        if p == "bf16":
            print("bf16 engine / fp32 engine: " + ", ".join(
                f"{h}x{w}x{b} {c_rows[('bf16', (h, w, b))]['engine_img_s'] / c_rows[('fp32', (h, w, b))]['engine_img_s']:.2f}x"
                for (h, w, b) in cases)
                + f"; bf16 roofline GEMM rate / vdpbf16ps peak: " + ", ".join(
                f"{h}x{w}x{b} {100 * c_rows[('bf16', (h, w, b))]['bf16_gflops'] / c_rows[('bf16', (h, w, b))]['dpbf16_peak_gflops']:.0f}%"
                for (h, w, b) in cases))
    print("\nmodel GFLOP per image: "
          + ", ".join(f"{h}x{w} {c_rows[('fp32', (h, w, b))]['gflop_per_img']:.2f}" for (h, w, b) in cases))


if __name__ == "__main__":
    main()
