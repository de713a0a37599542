"""A local BigQuery for the GCP tests: bqemulator (PyPI) on a free port, with billing-export tables.

bqemulator runs in a virtualenv of its own (made once, then reused: `.venv-bqemulator` beside
the repo, or OPTIINFRA_BQEMULATOR_VENV) from tests/bqemulator-requirements.txt, as a
subprocess. It loads DuckDB's spatial extension at start and would download it: the file from
the duckdb-extension-spatial package is placed where DuckDB looks first, under the HOME the
emulator is started with (the venv's own, not the user's).

Its NUMERIC keeps 3 decimals (real BigQuery: 9), so seeded amounts have at most 3.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from services import free_port, missing

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).with_name("bqemulator-requirements.txt")
PROJECT = "optiinfra-test"
DATASET = "billing"
DUCKDB = "v1.5.5"


def emulator_venv() -> Path:
    """The emulator's virtualenv, made (or remade, when the requirements changed) if needed."""
    venv = Path(os.environ.get("OPTIINFRA_BQEMULATOR_VENV") or ROOT / ".venv-bqemulator")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    stamp = venv / "ready"
    if stamp.exists() and stamp.read_text() == digest:
        return venv
    building = venv.with_name(venv.name + f".building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True,
                       capture_output=True, timeout=300)
        pip = subprocess.run([str(building / "bin" / "python"), "-m", "pip", "install", "-q",
                              "-r", str(REQUIREMENTS)], capture_output=True, text=True,
                             timeout=900)
        if pip.returncode:
            missing(f"bqemulator (pip install -r {REQUIREMENTS.name} failed: "
                    f"{pip.stderr.strip()[-500:]})")
        found = list(building.glob("lib/python*/site-packages/duckdb_extension_spatial/"
                                   f"extensions/{DUCKDB}/spatial.duckdb_extension"))
        if not found:
            missing("DuckDB's spatial extension file (duckdb-extension-spatial)")
        target = building / "home" / ".duckdb" / "extensions" / DUCKDB / "linux_amd64"
        target.mkdir(parents=True)
        shutil.copy2(found[0], target)
        # Only bin/python (a link to this interpreter) is used: the venv can move.
        shutil.rmtree(venv, ignore_errors=True)
        building.rename(venv)
        stamp.write_text(digest)
        return venv
    finally:
        shutil.rmtree(building, ignore_errors=True)


class Emulator:
    """A running bqemulator: its REST base URL and a client for seeding it."""

    def __init__(self, venv: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {"HOME": str(venv / "home"), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "bqemulator", "start",
             "--rest-host", "127.0.0.1", "--rest-port", str(self.port),
             "--grpc-host", "127.0.0.1", "--grpc-port", str(free_port()),
             "--project", PROJECT, "--log-level", "warning"],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.client = httpx.Client(base_url=f"{self.url}/bigquery/v2/projects/{PROJECT}/",
                                   timeout=60)
        deadline = time.monotonic() + 90
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bqemulator exited ({self.proc.returncode}): "
                                   f"{log.read_text()[-2000:]}")
            try:
                if self.client.get("datasets").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bqemulator did not answer within 90 s: "
                                   f"{log.read_text()[-2000:]}")
            time.sleep(0.2)
        self._post("datasets", {"datasetReference": {"projectId": PROJECT,
                                                     "datasetId": DATASET}})

    def _post(self, path: str, body: dict) -> dict:
        resp = self.client.post(path, json=body)
        resp.raise_for_status()
        out = resp.json()
        if out.get("insertErrors") or (out.get("errors") and not out.get("jobComplete")):
            raise RuntimeError(f"bqemulator refused {path}: {out}")
        return out

    def query(self, sql: str) -> list[list]:
        """Rows of a query, as text cells (for checking what the emulator holds)."""
        body = self._post("queries", {"query": sql, "useLegacySql": False})
        return [[c["v"] for c in r["f"]] for r in body.get("rows", [])]

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory):
    """One bqemulator for the session; each test gets tables of its own (`billing_export`)."""
    try:
        venv = emulator_venv()
    except (OSError, subprocess.SubprocessError) as exc:
        missing(f"bqemulator's virtualenv ({type(exc).__name__}: {exc})")
    emulator = Emulator(venv, tmp_path_factory.mktemp("bqemulator") / "emulator.log")
    yield emulator
    emulator.stop()


# --- a billing-export table and its truth ---------------------------------------------------

EXPORT_SCHEMA = [
    {"name": "service", "type": "RECORD", "fields": [
        {"name": "id", "type": "STRING"}, {"name": "description", "type": "STRING"}]},
    {"name": "sku", "type": "RECORD", "fields": [
        {"name": "id", "type": "STRING"}, {"name": "description", "type": "STRING"}]},
    {"name": "project", "type": "RECORD", "fields": [
        {"name": "id", "type": "STRING"}, {"name": "name", "type": "STRING"}]},
    {"name": "location", "type": "RECORD", "fields": [{"name": "region", "type": "STRING"}]},
    {"name": "currency", "type": "STRING"},
    {"name": "cost", "type": "FLOAT"},
    {"name": "usage_start_time", "type": "TIMESTAMP"},
    {"name": "usage_end_time", "type": "TIMESTAMP"},
    {"name": "export_time", "type": "TIMESTAMP"},
    {"name": "invoice", "type": "RECORD", "fields": [{"name": "month", "type": "STRING"}]},
    {"name": "cost_type", "type": "STRING"},
    {"name": "credits", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "name", "type": "STRING"}, {"name": "amount", "type": "FLOAT"},
        {"name": "type", "type": "STRING"}]},
]

SERVICES = [("6F81-5844-456A", "Compute Engine", ["N1 Predefined Instance Core",
                                                  "N1 Predefined Instance Ram"]),
            ("95FF-2EF5-5EA1", "Cloud Storage", ["Standard Storage US Multi-region"]),
            ("24E6-581D-38E5", "BigQuery", ["Analysis"])]
PROJECTS = ["shop-prod", "shop-staging"]
REGIONS = ["us-east1", "europe-west1", None]  # global services have no region
CREDITS = [("Sustained usage discount", "SUSTAINED_USAGE_DISCOUNT"),
           ("Free tier", "FREE_TIER")]

_table_ids = itertools.count(1)


def _stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ExportRow:
    """One export row as seeded: amounts are Decimals with at most 3 decimals."""

    service: tuple[str, str]
    sku: str
    project: str | None
    region: str | None
    currency: str
    cost: Decimal
    start: datetime
    exported: datetime
    invoice_month: str
    cost_type: str = "regular"
    credits: list[tuple[str, Decimal, str]] = field(default_factory=list)

    def json(self) -> dict:
        return {
            "service": {"id": self.service[0], "description": self.service[1]},
            "sku": {"id": hashlib.md5(self.sku.encode()).hexdigest()[:14],
                    "description": self.sku},
            "project": None if self.project is None else {"id": self.project,
                                                          "name": self.project.title()},
            "location": {"region": self.region},
            "currency": self.currency,
            "cost": float(self.cost),  # FLOAT64 at the source, as in real exports
            "usage_start_time": _stamp(self.start),
            "usage_end_time": _stamp(self.start + timedelta(hours=1)),
            "export_time": _stamp(self.exported),
            "invoice": {"month": self.invoice_month},
            "cost_type": self.cost_type,
            "credits": [{"name": n, "amount": float(a), "type": t} for n, a, t in self.credits],
        }


class BillingExport:
    """One billing-export table in the emulator, and every row seeded into it (the truth)."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.table_id = f"gcp_billing_export_v1_{os.getpid()}_{next(_table_ids)}"
        self.billing_table = f"{PROJECT}.{DATASET}.{self.table_id}"
        self.rows: list[ExportRow] = []
        emulator._post(f"datasets/{DATASET}/tables", {
            "tableReference": {"projectId": PROJECT, "datasetId": DATASET,
                               "tableId": self.table_id},
            "schema": {"fields": EXPORT_SCHEMA}})

    def insert(self, rows: list[ExportRow]) -> None:
        for i in range(0, len(rows), 500):
            self.emulator._post(f"datasets/{DATASET}/tables/{self.table_id}/insertAll",
                                {"rows": [{"json": r.json()} for r in rows[i:i + 500]]})
        self.rows.extend(rows)

    def delete_where(self, sql_condition: str, keep) -> None:
        """Delete rows in the emulator (DML) and from the truth (`keep(row)` false)."""
        self.emulator.query(f"DELETE FROM `{self.billing_table}` WHERE {sql_condition}")
        self.rows = [r for r in self.rows if keep(r)]

    # --- the truth -----------------------------------------------------------------------------

    def total(self) -> dict[str, Decimal]:
        """Cost plus credits per currency."""
        out: dict[str, Decimal] = {}
        for r in self.rows:
            out[r.currency] = (out.get(r.currency, Decimal(0)) + r.cost
                               + sum((a for _, a, _ in r.credits), Decimal(0)))
        return out

    def by_day_service_currency(self) -> dict[tuple[date, str, str], Decimal]:
        out: dict[tuple[date, str, str], Decimal] = {}
        for r in self.rows:
            key = (r.start.date(), r.service[1], r.currency)
            out[key] = (out.get(key, Decimal(0)) + r.cost
                        + sum((a for _, a, _ in r.credits), Decimal(0)))
        return out

    def credits(self) -> dict[str, Decimal]:
        """Credits per currency."""
        out: dict[str, Decimal] = {}
        for r in self.rows:
            for _, amount, _ in r.credits:
                out[r.currency] = out.get(r.currency, Decimal(0)) + amount
        return out


def seeded_rows(days: list[date], exported: datetime, *, per_day: int = 12, seed: int = 1,
                invoice_month=None) -> list[ExportRow]:
    """Hourly rows over `days`: every service, project and region mixed, EUR beside USD, credits
    on some rows; amounts with at most 3 decimals. `invoice_month(day)` defaults to the day's."""
    out: list[ExportRow] = []
    n = seed
    for day in days:
        for hour in range(per_day):
            n += 1
            service = SERVICES[n % len(SERVICES)]
            cost = Decimal(n * 7919 % 100_000) / 1000  # 0.000 .. 99.999
            credits = []
            if n % 3 == 0:
                name, kind = CREDITS[n % 2]
                credits.append((name, -(cost * Decimal("0.125")).quantize(Decimal("0.001")),
                                kind))
            if n % 7 == 0:
                credits.append(("Free tier", Decimal("-0.005"), "FREE_TIER"))
            start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
            out.append(ExportRow(
                service=service[:2], sku=service[2][n % len(service[2])],
                project=PROJECTS[n % len(PROJECTS)] if n % 11 else None,
                region=REGIONS[n % len(REGIONS)],
                currency="EUR" if n % 5 == 0 else "USD",
                cost=cost, start=start, exported=exported,
                invoice_month=(invoice_month(day) if invoice_month else f"{day:%Y%m}"),
                cost_type="tax" if n % 13 == 0 else "regular",
                credits=credits))
    return out


@pytest.fixture
def billing_export(bq_emulator) -> BillingExport:
    return BillingExport(bq_emulator)


def dumps(obj) -> str:
    return json.dumps(obj, default=str)


# --- Google in front of the emulator: a token endpoint and BigQuery over TLS ------------------


def make_tls_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA): (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "front.crt", folder / "front.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class ServiceAccountKey:
    path: Path
    private_key: str  # the secret: PEM
    public_key: str
    email: str

    def secret_lines(self) -> list[str]:
        """Pieces of the key that must never show up anywhere."""
        return [line for line in self.private_key.splitlines()
                if line and not line.startswith("-----")]


def make_service_account(folder: Path, token_uri: str, name: str = "collector") -> ServiceAccountKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    email = f"{name}@{PROJECT}.iam.gserviceaccount.com"
    path = folder / f"{name}-key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": PROJECT,
        "private_key_id": hashlib.sha1(public.encode()).hexdigest(), "private_key": private,
        "client_email": email, "client_id": "1234567890", "token_uri": token_uri}))
    return ServiceAccountKey(path, private, public, email)


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    status: int
    at: float  # time.monotonic()
    body: dict | None = None


class BigQueryFront:
    """What Google puts in front of BigQuery, for the emulator: an OAuth token endpoint that
    checks the service account's signed assertion, and the BigQuery API over TLS that wants a
    token it issued. It can throttle (429 with Retry-After, 403 rateLimitExceeded) and deny
    (403 accessDenied), and records every request."""

    def __init__(self, emulator: Emulator, folder: Path) -> None:
        import ssl
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.emulator = emulator
        self.cert_file, key_file = make_tls_cert(folder)
        self.tokens: set[str] = set()
        self.accounts: dict[str, str] = {}  # email -> public key PEM
        self.seen: list[Seen] = []
        self.throttle: list[str] = []  # '429' or '403': answers to give before forwarding
        self.deny = False
        self._lock = threading.Lock()
        front = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _answer(self, status: int, body: dict, headers: dict | None = None,
                        request: bytes = b"") -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                path, _, query = self.path.partition("?")
                from urllib.parse import parse_qs
                with front._lock:
                    front.seen.append(Seen(self.command, path, {k: v[0] for k, v in
                                                                parse_qs(query).items()},
                                           status, time.monotonic(),
                                           json.loads(request) if request else None))

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_POST(self) -> None:
                body = self._body()
                if self.path == "/token":
                    return self._token(body)
                self._bigquery(body)

            def do_GET(self) -> None:
                self._bigquery(b"")

            def _token(self, body: bytes) -> None:
                from urllib.parse import parse_qs

                from google.auth import jwt
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                try:
                    claims = jwt.decode(form.get("assertion", ""), verify=False)
                    public = front.accounts.get(claims.get("iss"))
                    if public is None:
                        raise ValueError("unknown account")
                    jwt.decode(form["assertion"], certs=public,
                               audience="https://oauth2.googleapis.com/token")
                except Exception:
                    return self._answer(400, {"error": "invalid_grant",
                                              "error_description": "Invalid JWT Signature."})
                token = "ya29.front-" + hashlib.sha256(os.urandom(16)).hexdigest()
                front.tokens.add(token)
                self._answer(200, {"access_token": token, "expires_in": 3599,
                                   "token_type": "Bearer"})

            def _bigquery(self, body: bytes) -> None:
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer ") or auth[7:] not in front.tokens:
                    return self._answer(401, {"error": {
                        "code": 401, "status": "UNAUTHENTICATED",
                        "message": "Request had invalid authentication credentials.",
                        "errors": [{"reason": "authError", "message": "Invalid Credentials"}]}})
                if front.deny:
                    return self._answer(403, {"error": {
                        "code": 403, "status": "PERMISSION_DENIED",
                        "message": "Access Denied: User does not have bigquery.jobs.create "
                                   "permission in project.",
                        "errors": [{"reason": "accessDenied", "message": "Access Denied"}]}})
                with front._lock:
                    answer = front.throttle.pop(0) if front.throttle else None
                if answer == "429":
                    return self._answer(429, {"error": {
                        "code": 429, "status": "RESOURCE_EXHAUSTED", "message": "Too many requests",
                        "errors": [{"reason": "rateLimitExceeded"}]}}, {"Retry-After": "1"})
                if answer == "403":
                    return self._answer(403, {"error": {
                        "code": 403, "message": "Exceeded rate limits: too many api requests "
                                                "per user per method for this user_method.",
                        "errors": [{"reason": "rateLimitExceeded"}]}})
                resp = front.emulator.client.request(
                    self.command, f"{front.emulator.url}{self.path}", content=body or None,
                    headers={"Content-Type": "application/json"} if body else None)
                try:
                    out = resp.json()
                except ValueError:
                    out = {"error": {"code": resp.status_code, "message": resp.text[:200]}}
                self._answer(resp.status_code, out, request=body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, key_file)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.token_uri = f"{self.url}/token"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def service_account(self, folder: Path, name: str = "collector") -> ServiceAccountKey:
        key = make_service_account(folder, self.token_uri, name)
        self.accounts[key.email] = key.public_key
        return key

    def count(self, method: str, path_part: str) -> int:
        return sum(1 for s in self.seen if s.method == method and path_part in s.path)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bq_front(bq_emulator, tmp_path):
    front = BigQueryFront(bq_emulator, tmp_path)
    yield front
    front.stop()
