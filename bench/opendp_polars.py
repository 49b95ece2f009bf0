#!/usr/bin/env python3
"""Peer comparison: the grouped DP count and a bounded DP sum with OpenDP's Polars API, next to the
same aggregates in plain Polars, on a ctstats dataset directory. Run it through bench/opendp.sh,
which installs the pinned OpenDP and Polars in a venv.

    python bench/opendp_polars.py --data DATASET_DIR [--runs N] [--epsilon E] [--contributions K]

Reads DATASET_DIR/manifest.json and scans the live Parquet files it lists (the `files` of every
batch; schemas/src/manifest.rs, `Manifest::live_files`). Both sides run on the same LazyFrame:
registrations 2003-01..2008-12, with the registration year and months_to_closure derived.

  count  distinct persons (person_key) per reporting_mission and registration year; the key-set
         (missions in the manifest x 2003..2008) is public, as in ctstats
  sum    months_to_closure (registration_month to case_closed_month, closed cases) clamped to
         [0, 24]

The DP side follows ctstats's query semantics: the privacy unit is one person (OpenDP's
identifier-based unit on person_key), each person keeps at most K records (default 1, ctstats's
default contribution_bound), chosen by record_key (see truncate()), and the noise is pure-epsilon
(integer) Laplace at epsilon E for each query. Each run times, interleaved: the raw count, the
DP count, the raw sum, the DP sum; a DP query is timed as calibration (LazyFrameQuery.resolve,
OpenDP's search for the noise scale) and execution (release and collect). Medians are printed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

try:
    import opendp.prelude as dp
    from opendp.accuracy import summarize_polars_measurement
except ImportError as e:  # pragma: no cover
    sys.exit(f"opendp_polars: {e}; run it through bench/opendp.sh, which installs OpenDP")

CELLS = ["reporting_mission", "year"]
FIRST_YEAR, LAST_YEAR = 2003, 2008
BOUNDS = (0, 24)
VALUE = "months_to_closure"
# A loose public upper bound on the rows of the data, which OpenDP needs (`Margin.max_length`)
# for its overflow analysis of sums; it does not change the noise.
MAX_ROWS = 1_000_000_000
ALPHA = 0.05


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, type=Path, help="ctstats dataset directory")
    p.add_argument("--runs", type=int, default=5, help="timed runs of each measurement (median)")
    p.add_argument("--epsilon", type=float, default=1.0, help="epsilon of each DP query")
    p.add_argument(
        "--contributions", type=int, default=1, help="records kept per person (ctstats's k)"
    )
    a = p.parse_args()
    if a.runs < 1 or a.epsilon <= 0 or a.contributions < 1:
        p.error("--runs and --contributions must be at least 1, --epsilon above 0")
    return a


def live_files(root: Path) -> tuple[dict, list[dict]]:
    """The manifest and its live files (Manifest::live_files: every batch's `files`)."""
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        sys.exit(f"opendp_polars: {path} not found: not a ctstats dataset")
    if manifest.get("format") != 1:
        sys.exit(f"opendp_polars: {path}: manifest format {manifest.get('format')} is not 1")
    files = [f for batch in manifest["batches"] for f in batch["files"]]
    if not files:
        sys.exit(f"opendp_polars: {path} lists no live files")
    return manifest, files


def months_between(start: str, end: str) -> pl.Expr:
    """Whole calendar months from `start` to `end`, as ctstats computes months_to_closure."""
    year = lambda c: pl.col(c).dt.year().cast(pl.Int64)  # noqa: E731
    month = lambda c: pl.col(c).dt.month().cast(pl.Int64)  # noqa: E731
    return (year(end) - year(start)) * 12 + month(end) - month(start)


def value_column(schema: pl.Schema) -> tuple[pl.Expr, str]:
    """months_to_closure when both dates exist, else the first integer column."""
    if "registration_month" in schema and "case_closed_month" in schema:
        expr = months_between("registration_month", "case_closed_month")
        return expr.alias(VALUE), "months_to_closure (registration_month to case_closed_month)"
    for name, dtype in schema.items():
        if dtype.is_integer():
            return pl.col(name).cast(pl.Int64).alias(VALUE), name
    sys.exit("opendp_polars: no case_closed_month and no integer column to sum")


def load(root: Path, files: list[dict]) -> tuple[pl.LazyFrame, str]:
    """The LazyFrame both sides run on: period filter and the derived columns only.

    OpenDP infers its input domain from the schema and has no domain for List columns, so only
    the columns the queries use are kept.
    """
    scan = pl.scan_parquet([str(root / f["path"]) for f in files], hive_partitioning=False)
    schema = scan.collect_schema()
    missing = [c for c in ("person_key", "record_key", "reporting_mission", "registration_month")
               if c not in schema]
    if missing:
        sys.exit(f"opendp_polars: the Parquet files have no column {', '.join(missing)}")
    value, value_name = value_column(schema)
    lf = (
        scan.filter(
            pl.col("registration_month").is_between(
                date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31)
            )
        )
        .with_columns(pl.col("registration_month").dt.year().alias("year"), value)
        .select("person_key", "record_key", "reporting_mission", "year", VALUE)
    )
    return lf, value_name


def public_keys(manifest: dict) -> pl.DataFrame:
    missions = sorted({b["reporting_mission"] for b in manifest["batches"]})
    return pl.DataFrame({"reporting_mission": missions}).join(
        pl.DataFrame({"year": list(range(FIRST_YEAR, LAST_YEAR + 1))}, schema={"year": pl.Int32}),
        how="cross",
    )


# --- the raw (non-private) side ---------------------------------------------------------------


def raw_count(lf: pl.LazyFrame) -> pl.DataFrame:
    return lf.group_by(CELLS).agg(pl.col("person_key").n_unique().alias("persons")).collect()


def raw_sum(lf: pl.LazyFrame) -> int:
    return (
        lf.filter(pl.col(VALUE).is_not_null())
        .select(pl.col(VALUE).clip(*BOUNDS).sum())
        .collect()
        .item()
    )


# The predicate OpenDP's truncate_per_group(keep=SortBy(record_key)) builds.
SORTBY_INDEX = pl.int_range(pl.len()).sort_by(pl.col("record_key"))


def exact_truncated_count(lf: pl.LazyFrame, k: int) -> pl.DataFrame:
    """What the DP count adds noise to: the same truncation as OpenDP's, in plain Polars."""
    return (
        lf.filter(SORTBY_INDEX.over("person_key", *CELLS) < 1)
        .filter(SORTBY_INDEX.over("person_key") < k)
        .group_by(CELLS)
        .agg(pl.len().alias("exact"))
        .collect()
    )


def exact_truncated_sum(lf: pl.LazyFrame, k: int) -> int:
    """What the DP sum adds noise to."""
    return (
        lf.filter(pl.col(VALUE).is_not_null())
        .filter(SORTBY_INDEX.over("person_key") < k)
        .select(pl.col(VALUE).clip(*BOUNDS).sum())
        .collect()
        .item()
    )


# --- the OpenDP side --------------------------------------------------------------------------

KEEP = None  # set in main once OpenDP is imported: dp.polars.SortBy(record_key)


def truncate(query, k: int, per_cell: bool):
    """ctstats's contribution bounding, k records per person, chosen by record_key.

    For the count, first one record per person and cell, then k of those: each person is in at
    most k cells, once each. truncate_num_groups is not used: in OpenDP 0.16.0 it keeps k - 1
    groups, as it compares a 1-based dense rank with `< k`. Nor is SortBy exactly "the first k
    by record_key" there: it filters on `int_range(len).sort_by(record_key).over(id) < k`, an
    argsort rather than a rank, so it keeps k records that depend only on the person's own
    records (which is what privacy needs) but not always the k smallest keys, as ctstats does.
    """
    if per_cell:
        query = query.truncate_per_group(1, by=CELLS, keep=KEEP)
    return query.truncate_per_group(k, keep=KEEP)


def dp_count_query(ctx, keys: pl.DataFrame, k: int):
    return (
        truncate(ctx.query(), k, per_cell=True)
        .group_by(CELLS)
        .agg(dp.len(signed=True).alias("persons"))
        .with_keys(keys)
    )


def dp_sum_query(ctx, k: int):
    return (
        truncate(ctx.query().filter(pl.col(VALUE).is_not_null()), k, per_cell=False)
        .select(pl.col(VALUE).dp.sum(BOUNDS))
    )


def context(lf: pl.LazyFrame, epsilon: float):
    """Two queries (count, sum) at `epsilon` each; one person (person_key) is the unit."""
    return dp.Context.compositor(
        data=lf,
        privacy_unit=dp.unit_of(contributions=1, identifier=pl.col("person_key")),
        privacy_loss=dp.loss_of(epsilon=2 * epsilon),
        split_evenly_over=2,
        margins=[dp.polars.Margin(by=[], max_length=MAX_ROWS)],
    )


def timed(f):
    t = time.perf_counter()
    out = f()
    return out, (time.perf_counter() - t) * 1e3


def noise_line(measurement) -> str:
    s = summarize_polars_measurement(measurement, ALPHA).row(0, named=True)
    return (
        f"{s['distribution']} scale {s['scale']:g}, {100 * (1 - ALPHA):.0f}% accuracy "
        f"+-{s['accuracy']:.1f}"
    )


def main() -> None:
    global KEEP
    args = parse_args()
    dp.enable_features("contrib")
    KEEP = dp.polars.SortBy(pl.col("record_key"))
    root, k, eps = args.data, args.contributions, args.epsilon
    manifest, files = live_files(root)
    lf, value_name = load(root, files)
    keys = public_keys(manifest)
    rows = sum(f["rows"] for f in files)

    med = lambda xs: statistics.median(xs)  # noqa: E731
    t = {name: [] for name in ("ctx", "raw_count", "trunc_count", "cal_count", "run_count",
                               "raw_sum", "trunc_sum", "cal_sum", "run_sum")}
    # One untimed warm-up round (plugin load, file cache), then the timed runs.
    for i in range(args.runs + 1):
        ctx, ms_ctx = timed(lambda: context(lf, eps))
        counts, ms_raw_count = timed(lambda: raw_count(lf))
        exact_counts, ms_trunc_count = timed(lambda: exact_truncated_count(lf, k))
        q = dp_count_query(ctx, keys, k)
        m_count, ms_cal_count = timed(q.resolve)
        dp_counts, ms_run_count = timed(lambda: ctx(m_count).collect())
        total, ms_raw_sum = timed(lambda: raw_sum(lf))
        exact_sum, ms_trunc_sum = timed(lambda: exact_truncated_sum(lf, k))
        q = dp_sum_query(ctx, k)
        m_sum, ms_cal_sum = timed(q.resolve)
        dp_total, ms_run_sum = timed(lambda: ctx(m_sum).collect().item())
        if i == 0:
            continue
        for name, ms in zip(t, (ms_ctx, ms_raw_count, ms_trunc_count, ms_cal_count, ms_run_count,
                                ms_raw_sum, ms_trunc_sum, ms_cal_sum, ms_run_sum)):
            t[name].append(ms)

    # Checks on the last run: the DP outputs are the truncated exact values plus noise.
    cells = keys.join(counts, on=CELLS, how="left").join(
        exact_counts, on=CELLS, how="left"
    ).join(dp_counts, on=CELLS, how="left", suffix="_dp").fill_null(0)
    diff = lambda a, b: pl.col(a).cast(pl.Int64) - pl.col(b).cast(pl.Int64)  # noqa: E731
    err = cells.select(
        diff("persons_dp", "exact").abs().mean().alias("noise"),
        diff("exact", "persons").mean().alias("truncation"),
    ).row(0, named=True)
    closed = lf.filter(pl.col(VALUE).is_not_null()).select(pl.len()).collect().item()

    raw_c, cal_c, run_c = med(t["raw_count"]), med(t["cal_count"]), med(t["run_count"])
    raw_s, cal_s, run_s = med(t["raw_sum"]), med(t["cal_sum"]), med(t["run_sum"])
    line = lambda label, ms: print(f"{label:<52} {ms:9.1f} ms")  # noqa: E731
    print(f"dataset: {root}: {rows} live rows in {len(files)} Parquet files, "
          f"{keys['reporting_mission'].n_unique()} missions; period {FIRST_YEAR}-01..{LAST_YEAR}-12")
    print(f"opendp {importlib.metadata.version('opendp')}, polars {pl.__version__}; "
          f"epsilon {eps:g} per query (pure DP); unit one person (person_key), "
          f"{k} record(s) kept per person; median of {args.runs} runs")
    line("OpenDP context (Context.compositor)", med(t["ctx"]))
    print(f"count: distinct persons per mission and registration year, {keys.height} public cells")
    line("  raw Polars", raw_c)
    line("  raw Polars after the same truncation (no noise)", med(t["trunc_count"]))
    line("  OpenDP calibrate (LazyFrameQuery.resolve)", cal_c)
    line("  OpenDP execute (release + collect)", run_c)
    line("  OpenDP total", cal_c + run_c)
    print(f"  noise: {noise_line(m_count)} per cell; mean |DP - exact truncated| "
          f"{err['noise']:.1f}; truncation moves a cell by {err['truncation']:+.1f} on average")
    print(f"sum: {value_name} clamped to {list(BOUNDS)}, {closed} closed cases")
    line("  raw Polars", raw_s)
    line("  raw Polars after the same truncation (no noise)", med(t["trunc_sum"]))
    line("  OpenDP calibrate (LazyFrameQuery.resolve)", cal_s)
    line("  OpenDP execute (release + collect)", run_s)
    line("  OpenDP total", cal_s + run_s)
    print(f"  noise: {noise_line(m_sum)}; raw {total}, exact truncated {exact_sum}, DP {dp_total}")
    print(f"ratio count DP/raw: execute {run_c / raw_c:.1f}x, total {(cal_c + run_c) / raw_c:.1f}x")
    print(f"ratio sum DP/raw: execute {run_s / raw_s:.1f}x, total {(cal_s + run_s) / raw_s:.1f}x")
    # For bench/opendp.sh: the whole DP count (calibrate + execute), one key=value line.
    print(f"opendp_count_ms={cal_c + run_c:.3f}")

if __name__ == "__main__":
    main()
