"""Writes a real-looking customer table to try jaxnet on: an identifier, a date, categories,
yes/no answers, a few empty cells and an imbalanced string label (no download).

    python scripts/make_table.py customers.csv                 # 3,000 rows with the label
    python scripts/make_table.py new.csv --rows 200 --seed 1 --new-rows
        # other customers, columns shuffled, no label, a plan never seen in training

Each customer ``churn``s ("left") or not ("stayed"), about 1 in 4, by a rule of their plan,
tenure, support calls, spend, autopay and the season they signed up in, plus noise; so a
model has something real to find and a ceiling below 100%.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

PLANS = ("basic", "plus", "pro")
REGIONS = ("north", "south", "east", "west")


def make_table(rows: int = 3000, seed: int = 0, *, new_rows: bool = False) -> pd.DataFrame:
    """The table as a DataFrame: ``new_rows`` shuffles the columns, drops the label and
    gives a few customers a plan ("enterprise") that the training table never has."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(PLANS, rows, p=[0.5, 0.3, 0.2]).astype(object)
    if new_rows:
        plan[rng.random(rows) < 0.05] = "enterprise"
    region = rng.choice(REGIONS, rows).astype(object)
    signup = pd.Timestamp("2019-01-01") + pd.to_timedelta(rng.integers(0, 5 * 365, rows), "D")
    tenure = rng.gamma(2.0, 12.0, rows).round(1)
    calls = rng.poisson(1.5, rows)
    spend = (np.select([plan == "basic", plan == "plus"], [20.0, 45.0], 80.0)
             + rng.normal(0, 8, rows)).round(2)
    age = rng.normal(42, 12, rows).round().clip(18, 90)
    autopay = rng.random(rows) < 0.6
    winter = np.isin(signup.month, (11, 12, 1, 2))
    score = (0.4 + 0.8 * (calls >= 3) + 0.9 * (calls >= 5) - 0.045 * tenure
             - 0.9 * autopay + 0.012 * (spend - 40) + 0.7 * winter
             + np.select([plan == "basic", plan == "pro"], [0.5, -0.6], 0.0)
             + rng.normal(0, 0.6, rows))
    frame = pd.DataFrame({
        "customer_id": [f"C{seed:02d}-{i:06d}" for i in range(rows)],
        "signup_date": signup.strftime("%Y-%m-%d"),
        "plan": plan,
        "region": region,
        "age": age,
        "tenure_months": tenure,
        "monthly_spend": spend,
        "support_calls": calls,
        "autopay": np.where(autopay, "yes", "no"),
        "churn": np.where(score > 0, "left", "stayed"),
    })
    for column, share in (("age", 0.08), ("region", 0.05), ("monthly_spend", 0.03)):
        frame.loc[rng.random(rows) < share, column] = None  # empty cells
    if new_rows:
        frame = frame.drop(columns="churn")
        frame = frame[list(rng.permutation(frame.columns))]
    return frame


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the .csv file to write")
    p.add_argument("--rows", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--new-rows", action="store_true", help="shuffled columns, no label, an "
                   "unseen plan: rows to predict on")
    args = p.parse_args(argv)
    make_table(args.rows, args.seed, new_rows=args.new_rows).to_csv(args.out, index=False)
    print(f"wrote {args.rows} rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
