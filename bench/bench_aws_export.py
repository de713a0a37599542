"""AWS Data Export ingestion: a FOCUS Parquet export in a local S3 (moto's server, a process of
its own) read into chDB by ClickHouse's s3(), end to end through `collect aws --types export`.

    python bench/bench_aws_export.py [--rounds 1] [--sizes 1000000,4000000] [--files 8]

Each collection runs in a fresh process (fresh data dir, chDB in-process). Prints rows per
second (the run's own duration), what chDB alone reads from that S3 (the ceiling the local
server sets), the collecting process's peak RSS and its Python heap's peak (tracemalloc):
Python reads only the manifests, so neither grows with the rows.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import figure, fmt, free_port, machine, save_results, tempdir, wait_until  # noqa: E402

TARGET_ROWS_S = 1_000_000
BUCKET, ROOT = "bench-exports", "cur/focus-bench"
KEY_ID, SECRET = "AKIABENCHBENCH0001", "bench-secret-not-real"
SERVICES = ["Amazon Elastic Compute Cloud - Compute", "Amazon Simple Storage Service",
            "AWS Lambda", "Amazon Relational Database Service", "Amazon CloudFront"]
# The collecting process: the CLI under tracemalloc, which sees only Python's own allocations.
# A command logs only warnings (to stderr): the store's line timing each import is caught here.
CHILD = """
import json, logging, re, sys, tracemalloc
tracemalloc.start()
took = []

class Took(logging.Handler):
    def emit(self, record):
        found = re.search(r"rows from \\d+ files in ([\\d.]+) s", record.getMessage())
        if found:
            took.append(float(found[1]))

logging.getLogger("optiinfra.metrics").addHandler(Took(logging.INFO))
from optiinfra_tui.cli import main
try:
    main(["collect", "aws", "--types", "export", "--inline", "--json"])
finally:
    with open(sys.argv[1], "w") as fh:
        json.dump({"py_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20,
                   "import_s": took}, fh)
"""


class Moto:
    """moto's server in a process of its own (it holds the objects in its memory, not ours)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        import botocore.session

        self.s3 = botocore.session.Session().create_client(
            "s3", region_name="us-east-1", endpoint_url=self.url, aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET)

        def up() -> bool:
            try:
                self.s3.list_buckets()
                return True
            except Exception:
                return False

        if not wait_until(up, 30, 0.2):
            raise RuntimeError("moto_server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def focus_file(rows: int, seed: int) -> bytes:
    """A FOCUS Parquet file: exact decimal costs, timestamps, a few services."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rnd = np.random.default_rng(seed)

    def decimals(micros: np.ndarray) -> pa.Array:
        # Decimal128 is a 16-byte two's complement integer: low word, then the sign.
        words = np.empty((len(micros), 2), dtype=np.int64)
        words[:, 0], words[:, 1] = micros, micros >> 63
        return pa.Array.from_buffers(pa.decimal128(18, 6), len(micros),
                                     [None, pa.py_buffer(words.tobytes())])

    def pick(values: list[str]) -> pa.Array:
        return pa.array(values).take(pa.array(rnd.integers(0, len(values), rows)))

    billed = rnd.integers(-10_000, 50_000_000, rows, dtype=np.int64)
    start = (np.datetime64("2026-02-01T00:00:00", "us")
             + rnd.integers(0, 28 * 24, rows).astype("timedelta64[h]"))
    table = pa.table({
        "BillingAccountId": pick(["111122223333", "444455556666"]),
        "BilledCost": decimals(billed), "EffectiveCost": decimals(billed // 2),
        "ListCost": decimals(billed), "ListUnitPrice": pa.array(rnd.random(rows)),
        "BillingCurrency": pick(["USD"]),
        "ChargePeriodStart": pa.array(start, pa.timestamp("us", tz="UTC")),
        "ChargePeriodEnd": pa.array(start + np.timedelta64(1, "h"), pa.timestamp("us", tz="UTC")),
        "ChargeCategory": pick(["Usage", "Usage", "Usage", "Credit", "Tax"]),
        "ChargeDescription": pick([f"{s} usage" for s in SERVICES]),
        "ServiceName": pick(SERVICES),
        "ResourceId": pa.array([f"i-{n:012x}" for n in rnd.integers(0, 10_000, rows)]),
        "ResourceName": pick(["", "web", "db"]), "RegionId": pick(["us-east-1", "eu-west-1"]),
        "PricingQuantity": pa.array(rnd.random(rows) * 24), "PricingUnit": pick(["Hours"]),
    })
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy")
    return sink.getvalue()


def put_export(moto: Moto, rows: int, files: int) -> list[str]:
    """The export's data files and manifest for February 2026; returns the files' URLs."""
    try:
        moto.s3.create_bucket(Bucket=BUCKET)
    except Exception:
        pass
    per = rows // files
    uris = []
    for n in range(files):
        key = f"{ROOT}/data/BILLING_PERIOD=2026-02/focus-bench-{rows}-{n + 1:05d}.snappy.parquet"
        moto.s3.put_object(Bucket=BUCKET, Key=key, Body=focus_file(per, n))
        uris.append(f"s3://{BUCKET}/{key}")
    manifest = {"executionId": f"bench-{rows}", "dataFiles": uris, "columns": [
        {"name": c, "type": t} for c, t in (
            ("BillingAccountId", "string"), ("BilledCost", "decimal"),
            ("EffectiveCost", "decimal"), ("ListCost", "decimal"), ("ListUnitPrice", "double"),
            ("BillingCurrency", "string"), ("ChargePeriodStart", "timestamp"),
            ("ChargePeriodEnd", "timestamp"), ("ChargeCategory", "string"),
            ("ChargeDescription", "string"), ("ServiceName", "string"),
            ("ResourceId", "string"), ("ResourceName", "string"), ("RegionId", "string"),
            ("PricingQuantity", "double"), ("PricingUnit", "string"))]}
    moto.s3.put_object(Bucket=BUCKET, Key=f"{ROOT}/metadata/BILLING_PERIOD=2026-02/"
                       "focus-bench-Manifest.json", Body=json.dumps(manifest).encode())
    return [f"{moto.url}/{BUCKET}/{u.split('/', 3)[3]}" for u in uris]


def read_ceiling(urls: list[str]) -> float:
    """Rows per second chDB reads from the local S3 alone (a count over every column)."""
    from chdb import session as chs

    sess = chs.Session()
    try:
        start = time.monotonic()
        total = 0
        for url in urls:
            out = sess.query(f"SELECT count(), sum(BilledCost), max(length(ResourceId)) FROM "
                             f"s3('{url}', '{KEY_ID}', '{SECRET}', 'Parquet')", "CSV")
            total += int(str(out).split(",")[0])
        return total / (time.monotonic() - start)
    finally:
        sess.close()


def collect(moto: Moto) -> dict:
    """One collection of the export in a fresh process."""
    home = tempdir("bench-aws-export-")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL", "OPTIINFRA_"))}
    (home / "config.toml").write_text("schedules = []\n")
    env.update(OPTIINFRA_HOME=str(home), OPTIINFRA_CONFIG=str(home / "config.toml"),
               AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
               AWS_ENDPOINT_URL=moto.url, AWS_EC2_METADATA_DISABLED="true",
               AWS_EXPORT_URI=f"s3://{BUCKET}/{ROOT}")
    try:
        with open(home / "out", "w") as out_f, open(home / "err", "w") as err_f:
            proc = subprocess.Popen([sys.executable, "-c", CHILD, str(home / "heap.json")],
                                    env=env, stdout=out_f, stderr=err_f)
            _, _, usage = os.wait4(proc.pid, 0)  # also the child's own peak RSS
            proc.returncode = 0
        out, err = (home / "out").read_text(), (home / "err").read_text()
        heap = json.loads((home / "heap.json").read_text())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    run = json.loads(out) if out.strip().startswith("{") else {}
    if run.get("status") != "success":
        raise RuntimeError(f"collection failed: {run.get('error_message') or err[-800:]}")
    import_s = sum(heap["import_s"]) or float("nan")
    return {"rows": run["rows"], "rows_s": run["rows"] / (run["duration_ms"] / 1000),
            "seconds": run["duration_ms"] / 1000, "import_rows_s": run["rows"] / import_s,
            "import_s": import_s, "peak_rss_mb": usage.ru_maxrss / 1024,
            "py_peak_mb": heap["py_peak_mb"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--sizes", default="1000000,4000000")
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"AWS export (FOCUS Parquet, {args.files} files) into chDB: {args.rounds} rounds of "
          f"{', '.join(f'{n:,}' for n in sizes)} rows; {machine()}", flush=True)
    results: dict[int, list[dict]] = {n: [] for n in sizes}
    ceilings: dict[int, float] = {}
    moto = Moto()
    try:
        for n in sizes:
            urls = put_export(moto, n, args.files)
            ceilings[n] = read_ceiling(urls)
            print(f"  {n:>10,} rows: chDB alone reads {ceilings[n]:,.0f} rows/s from the local "
                  "S3", flush=True)
            for r in range(args.rounds):
                res = collect(moto)
                assert res["rows"] == n // args.files * args.files, res
                results[n].append(res)
                print(f"  round {r + 1} {n:>10,} rows: {res['rows_s']:,.0f} rows/s "
                      f"({res['seconds']:.1f} s; the insert alone {res['import_rows_s']:,.0f} "
                      f"rows/s in {res['import_s']:.1f} s), peak RSS {res['peak_rss_mb']:.0f} MB, Python "
                      f"heap peak {res['py_peak_mb']:.1f} MB", flush=True)
    finally:
        moto.stop()
    print("results: median [min-max] over rounds", flush=True)
    for n in sizes:
        rate = [x["rows_s"] for x in results[n]]
        figure(f"{n:>10,} rows: rows/s into chDB (run duration)", fmt(rate, "rows/s", 0),
               ">= 1,000,000 rows/s", statistics.median(rate) >= TARGET_ROWS_S)
        figure(f"{n:>10,} rows: rows/s of the insert alone",
               fmt([x["import_rows_s"] for x in results[n]], "rows/s", 0))
        figure(f"{n:>10,} rows: peak RSS", fmt([x["peak_rss_mb"] for x in results[n]], "MB", 0))
        figure(f"{n:>10,} rows: Python heap peak",
               fmt([x["py_peak_mb"] for x in results[n]], "MB", 1))
    heaps = {n: statistics.median(x["py_peak_mb"] for x in results[n]) for n in sizes}
    growth = heaps[max(sizes)] - heaps[min(sizes)]
    figure(f"Python heap growth {min(sizes):,} -> {max(sizes):,} rows", f"{growth:+.1f} MB",
           "flat", abs(growth) < 5)
    save_results("aws_export", {"ceilings": ceilings, "runs": results})
    return {"ceilings": ceilings, "runs": results}


if __name__ == "__main__":
    main()
