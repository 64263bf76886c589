"""How fast a big CSV file is read and preprocessed, and how much memory it takes.

    python scripts/bench_read.py                 # 1,000,000 rows x 20 numbers + 1 category
    python scripts/bench_read.py --rows 200000

Writes the file once (under --dir, default the system's temp folder), then in a fresh
process per repeat times ``jaxnet.load_dataset("csv", ...)`` followed by the preprocessing a
run does (``jaxnet.fitting.prepare``: standardisation fitted on the training split), and
reads the process's peak resident memory (``ru_maxrss``) before and after. Prints the best
wall time and the memory it added against the size of the final float32 arrays. Targets
(issue 29): under 5 s on 2 cores, under 3x the float32 array.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

_CHILD = r"""
import json, resource, sys, time
import numpy as np
import jaxnet.fitting, jaxnet.data.csv, pandas, sklearn.preprocessing  # imports, not timed
from jaxnet.config import TrainConfig

before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
config = TrainConfig(data_path=sys.argv[1], target="label")
data, prep = jaxnet.fitting.prepare(config, jaxnet.fitting.load_data(config))
seconds = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
final = sum(getattr(data, f"x_{s}").nbytes for s in ("train", "val", "test"))
print(json.dumps({"seconds": seconds, "added_mib": (after - before) / 1024,
                  "final_mib": final / 2**20, "features": data.num_features}))
"""


def write_file(path: pathlib.Path, rows: int, seed: int = 0) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 20)).round(5)
    frame = pd.DataFrame(x, columns=[f"f{j}" for j in range(20)])
    frame.insert(7, "colour", rng.choice(["red", "green", "blue", "amber", "violet"], rows))
    frame["label"] = (x[:, 0] + x[:, 1] > 0).astype(int)
    frame.to_csv(path, index=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dir", default=tempfile.gettempdir())
    args = p.parse_args(argv)
    path = pathlib.Path(args.dir) / f"jaxnet-bench-read-{args.rows}.csv"
    if not path.exists():
        write_file(path, args.rows)
    size = path.stat().st_size / 2**20
    runs = []
    for _ in range(args.repeats):
        out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                             text=True, check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    memory = min(r["added_mib"] for r in runs)
    print(f"{args.rows:,} rows x 20 numbers + 1 category ({size:.0f} MiB of CSV) -> "
          f"{best['features']} features")
    every = ", ".join(f"{r['seconds']:.2f}" for r in runs)
    print(f"read + preprocess: best {best['seconds']:.2f} s of {args.repeats} fresh processes "
          f"(all: {every}); target < 5 s")
    print(f"peak memory added: {memory:.0f} MiB = {memory / best['final_mib']:.2f}x the final "
          f"float32 arrays ({best['final_mib']:.0f} MiB); target < 3x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
