"""Markdown tables of a `scripts/bench.py` run, for the README's Performance section.

Usage: python scripts/bench_table.py [bench.json]
"""

from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_peers import PEERS


def _fmt(value):
    if value is None:
        return ""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def step_table(rows) -> str:
    """One line per (batch, optimizer, dropout, grad): steps/s of every implementation."""
    steps = [r for r in rows if r.get("work") == "step" and r.get("steps_per_s")]
    rows_at = {(r["impl"], r["batch"], r.get("optimizer"), r.get("grad"), r.get("dropout"),
                r.get("shuffled")): r for r in steps}
    index = {key: r["steps_per_s"] for key, r in rows_at.items()}
    bound = {r["batch"]: r["steps_per_s"] for r in steps if r["impl"] == "gemm-bound"}
    keys = sorted({(r["batch"], r["optimizer"], r["dropout"], r["grad"]) for r in steps
                   if r["impl"] == "jaxnet"})
    lines = ["| batch | optimizer | dropout | grad | jaxnet epoch (shuffled) | jaxnet step "
             "(fixed) | plain JAX | Flax | Equinox | NumPy | PyTorch | shuffled / fastest peer "
             "| GEMM-bound | jaxnet compile s (epoch / step) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for batch, opt, drop, grad in keys:
        shuffled = index.get(("jaxnet", batch, opt, grad, drop, True))
        fixed = index.get(("jaxnet", batch, opt, grad, drop, False))
        peer = {p: index.get((p, batch, opt, "autodiff", drop, False)) for p in PEERS}
        # The peers, NumPy and PyTorch have one row per (batch, optimizer, dropout): show it
        # on the manual line.
        others = [peer[p] if grad == "manual" else None for p in PEERS]
        numpy = index.get(("numpy", batch, opt, "manual", drop, False)) if grad == "manual" else None
        torch = index.get(("torch", batch, opt, "autograd", drop, False)) if grad == "manual" else None
        over = rows_at.get(("jaxnet", batch, opt, grad, drop, True), {}).get("over_fastest_peer")
        ratio = f"{over:.2f}" if over else ""
        compile_s = [rows_at.get(("jaxnet", batch, opt, grad, drop, is_shuffled), {}).get("compile_s")
                     for is_shuffled in (True, False)]
        compiles = " / ".join("" if c is None else f"{c:.1f}" for c in compile_s)
        cells = [batch, opt, drop, grad, f"**{_fmt(shuffled)}**" if shuffled else "",
                 _fmt(fixed), *map(_fmt, others), _fmt(numpy), _fmt(torch), ratio,
                 _fmt(bound.get(batch)), compiles]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def compile_table(rows) -> str:
    """Seconds to compile each configuration's shuffled epoch in a fresh process (best of the
    tries), manual and autodiff side by side."""
    got = {(r["batch"], r["optimizer"], r["dropout"], r["grad"]): r["compile_s"]
           for r in rows if r.get("work") == "compile"}
    if not got:
        return ""
    lines = ["| batch | optimizer | dropout | manual s | autodiff s |", "|---|---|---|---|---|"]
    for batch, opt, drop in sorted({key[:3] for key in got}):
        cells = ["" if got.get((batch, opt, drop, g)) is None else f"{got[(batch, opt, drop, g)]:.2f}"
                 for g in ("manual", "autodiff")]
        lines.append(f"| {batch} | {opt} | {drop} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(rows) -> str:
    sweeps = [r for r in rows if r.get("work") == "sweep"]
    lines = ["| dtype | settings x steps | jaxnet s (compile s) | NumPy loop s | PyTorch loop s |",
             "|---|---|---|---|---|"]
    for dtype in ("float32", "float64"):
        got = {r["impl"]: r for r in sweeps if r["dtype"] == dtype}
        if "jaxnet" not in got:
            continue
        ours = got["jaxnet"]
        lines.append(f"| {dtype} | {ours['settings']} x {ours['iterations']} | "
                     f"**{ours['median_s']:.1f}** ({ours['compile_s']:.1f}) | "
                     + " | ".join(f"{got[k]['median_s']:.1f}" if k in got else "-"
                                  for k in ("numpy", "torch")) + " |")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    rows = json.loads(open(argv[0] if argv else "bench.json").read())
    meta = rows[0]
    print(f"<!-- {meta.get('device')}, jax {meta.get('jax')}, flax {meta.get('flax')}, "
          f"equinox {meta.get('equinox')}, torch {meta.get('torch')}, peak "
          f"{meta.get('peak_gflops') or 0:.0f} GFLOP/s, {meta.get('seconds', 0):.0f} s -->")
    print(step_table(rows))
    print()
    compiles = compile_table(rows)
    if compiles:
        print(compiles)
        print()
    print(sweep_table(rows))
    for r in rows:
        if r.get("work") in ("e2e", "dp"):
            print(f"- {r['work']}: {r.get('notes', '')}: "
                  + (f"{r['steps_per_s']:.1f} steps/s" if r.get("steps_per_s")
                     else f"{r['median_s']:.1f} s")
                  + (f" (separate runs {r['separate_runs_s']:.1f} s)" if r.get("separate_runs_s")
                     else ""))


if __name__ == "__main__":
    main()
