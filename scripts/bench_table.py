"""Markdown tables of a `scripts/bench.py` run, written into docs/performance.md.

Usage:
  python scripts/bench_table.py [bench.json]                              # print the tables
  python scripts/bench_table.py bench.json --write docs/performance.md    # refresh the doc's tables
  python scripts/bench_table.py bench.json --check docs/performance.md    # exit 1 if they differ

In the doc each table sits between `<!-- bench_table NAME -->` and `<!-- /bench_table NAME -->`
lines (NAME one of `TABLES`); `--write` rewrites what is between them and nothing else.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
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


def run_line(meta) -> str:
    """The machine and versions of the run the tables come from."""
    return (f"Run: {meta.get('device')}, {meta.get('cores')} cores, jax {meta.get('jax')}, "
            f"flax {meta.get('flax')}, equinox {meta.get('equinox')}, numpy {meta.get('numpy')}, "
            f"torch {meta.get('torch')}; measured peak {meta.get('peak_gflops') or 0:.0f} GFLOP/s; "
            f"{meta.get('seconds', 0):.0f} s in all.")


def other_lines(rows) -> str:
    """One bullet per end-to-end (`e2e`) and data-parallel (`dp`) row."""
    lines = []
    for r in rows:
        if r.get("work") in ("e2e", "dp"):
            lines.append(f"- {r['work']}: {r.get('notes', '')}: "
                         + (f"{r['steps_per_s']:.1f} steps/s" if r.get("steps_per_s")
                            else f"{r['median_s']:.1f} s")
                         + (f" (separate runs {r['separate_runs_s']:.1f} s)"
                            if r.get("separate_runs_s") else ""))
    return "\n".join(lines)


TABLES = {"run": lambda rows: run_line(rows[0]), "steps": step_table, "compile": compile_table,
          "sweep": sweep_table, "others": other_lines}
_MARKED = re.compile(r"^<!-- bench_table (\S+) -->\n(.*?)^<!-- /bench_table \1 -->$",
                     re.MULTILINE | re.DOTALL)


def render(rows) -> dict[str, str]:
    """Every table of `TABLES`, by name, from the rows of a bench.json."""
    return {name: table(rows) for name, table in TABLES.items()}


def fill(text: str, tables: dict[str, str]) -> str:
    """`text` with the lines between each pair of `bench_table NAME` markers replaced by
    `tables[NAME]`.

    Raises:
      ValueError: `text` has no markers, or a marker names no table.
    """
    names = [m.group(1) for m in _MARKED.finditer(text)]
    if not names:
        raise ValueError("no '<!-- bench_table NAME -->' ... '<!-- /bench_table NAME -->' "
                         f"markers found; NAME is one of {', '.join(TABLES)}")
    unknown = sorted(set(names) - set(tables))
    if unknown:
        raise ValueError(f"unknown bench_table marker(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(TABLES)}")

    def body(m):
        table = tables[m.group(1)]
        # Blank lines around the table: Markdown ends the comment's HTML block before it.
        return (f"<!-- bench_table {m.group(1)} -->\n" + (f"\n{table}\n\n" if table else "")
                + f"<!-- /bench_table {m.group(1)} -->")

    return _MARKED.sub(body, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", default="bench.json",
                        help="the rows written by scripts/bench.py (default bench.json)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--write", metavar="DOC", help="rewrite the marked tables of DOC in place")
    where.add_argument("--check", metavar="DOC",
                       help="exit 1 if the marked tables of DOC differ from the rendering")
    args = parser.parse_args(argv)
    rows = json.loads(pathlib.Path(args.bench).read_text())
    tables = render(rows)
    doc = args.write or args.check
    if doc is None:
        print("\n\n".join(t for t in tables.values() if t))
        return
    text = pathlib.Path(doc).read_text()
    try:
        filled = fill(text, tables)
    except ValueError as err:
        parser.error(f"{doc}: {err}")
    if args.write:
        pathlib.Path(doc).write_text(filled)
        print(f"{doc}: tables {'rewritten' if filled != text else 'already up to date'}")
    elif filled != text:
        sys.exit(f"{doc}: its tables differ from {args.bench}; refresh them with "
                 f"python scripts/bench_table.py {args.bench} --write {doc}")


if __name__ == "__main__":
    main()
