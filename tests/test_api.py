"""The HTTP API (`--headless --api-port`), called over real HTTP as the old stack's clients did.

A real uvicorn server on a free port: in this process (over an embedded SQLite queue, no
workers, for the inputs it must refuse) or as `optiinfra-tui --headless` against Redis,
PostgreSQL and the local Vultr double, whose runs `optiinfra-tui history` then lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from procs import cli_without, worker_env
from services import free_port, wait_until

from optiinfra_tui import access
from optiinfra_tui.api.limits import TriggerLimit
from optiinfra_tui.api.schemas import CostLine, Run
from optiinfra_tui.api.server import ApiServer
from optiinfra_tui.formats import costs_json
from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage.history import CollectionRun
from optiinfra_tui.storage.queries import CostTotal
from optiinfra_tui.worker.runs import RunRow
from optiinfra_tui.worker.runtime import Runtime

CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
TOKEN = "t0ken-for-the-tests-0123456789"
OTHER = "another-token-for-team-b-98765"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OLD_BODY = {"customer_id": None, "provider": "vultr", "data_types": ["cost"], "async_mode": True}
ANSWER_FIELDS = {"task_id", "status", "message", "started_at", "async_mode"}


class Clock:
    """The rate limiter's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api(make_env, tmp_path):
    """An API server in this process over an embedded queue with no consumer: what it queues
    stays queued, so a refused request can be seen to have recorded nothing."""
    servers = []

    def start(toml: str = "schedules = []\n", limit: TriggerLimit | None = None, **env):
        cfg = tmp_path / f"api{len(servers)}.toml"
        cfg.write_text(toml)
        env = make_env(OPTIINFRA_API_TOKEN=TOKEN, TEAM_B_TOKEN=OTHER, OPTIINFRA_CONFIG=str(cfg),
                       **env)
        settings = load_settings(env)
        rt = Runtime(settings)
        port = free_port()
        server = ApiServer(rt, "127.0.0.1", port, access.tokens(settings), limit)
        server.start()
        servers.append(server)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        client.rt, client.env = rt, env
        return client

    yield start
    for server in servers:
        server.stop()


def no_traceback(r: httpx.Response) -> httpx.Response:
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text
    assert TOKEN not in r.text and OTHER not in r.text
    return r


def nothing_recorded(client) -> None:
    client.rt.history()
    assert CollectionRun.select().count() == 0
    assert client.rt.huey.pending_count() == 0


# --- the old stack's clients, end to end -------------------------------------------------------


def test_an_old_stack_client_triggers_and_the_run_is_in_history(tmp_path, fake_vultr, redis_url,
                                                                 postgres_url):
    (tmp_path / "c.toml").write_text("schedules = []\n")
    env = worker_env(os.environ, REDIS_URL=redis_url, DATABASE_URL=postgres_url,
                     OPTIINFRA_HOME=tmp_path / "home", OPTIINFRA_CONFIG=tmp_path / "c.toml",
                     VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url,
                     OPTIINFRA_API_TOKEN=TOKEN, RETRY_DELAY="0.05")
    port = free_port()
    out = tmp_path / "headless.txt"
    with out.open("w") as fh:
        proc = subprocess.Popen(CLI + ["--headless", "--workers", "1", "--api-port", str(port)],
                                env=env, stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _healthy(base), 60), out.read_text()
        # The old stack's client: requests.post(url, json=body, headers=...), then the answer.
        r = no_traceback(httpx.post(f"{base}/api/v1/collect/trigger", json=OLD_BODY,
                                    headers=AUTH, timeout=30))
        assert r.status_code == 200, r.text
        answer = r.json()
        assert ANSWER_FIELDS <= set(answer)
        assert (answer["status"], answer["async_mode"]) == ("queued", True)
        assert answer["started_at"].endswith("Z") and answer["task_id"]
        done = wait_until(lambda: _run(base, answer["task_id"])["status"] in ("success", "failed")
                          and _run(base, answer["task_id"]), 120)
        assert done and done["status"] == "success", done
        assert done["rows"] == fake_vultr.line_count() and done["trigger"] == "api"

        # async_mode false waits and answers with the outcome.
        r = no_traceback(httpx.post(f"{base}/api/v1/collect/trigger", headers=AUTH, timeout=120,
                                    json=dict(OLD_BODY, async_mode=False)))
        sync = r.json()
        assert r.status_code == 200 and ANSWER_FIELDS <= set(sync), r.text
        assert (sync["status"], sync["async_mode"]) == ("success", False)
        assert sync["run"]["status"] == "success" and sync["run"]["finished_at"]
        assert sync["message"].startswith(f"Run {sync['run_id']} success")

        # `optiinfra-tui history` lists both, as the API does: one serialiser for both.
        shown = subprocess.run(CLI + ["history", "--json", "--limit", "5"], env=env,
                               capture_output=True, text=True, timeout=60)
        listed = json.loads(shown.stdout)
        assert [h["task_id"] for h in listed] == [sync["task_id"], answer["task_id"]]
        assert [h["trigger"] for h in listed] == ["api", "api"]
        assert httpx.get(f"{base}/api/v1/runs?limit=5", headers=AUTH).json() == listed
        assert httpx.get(f"{base}/api/v1/runs/{listed[1]['id']}", headers=AUTH).json() == listed[1]

        costs = httpx.get(f"{base}/api/v1/costs", headers=AUTH).json()
        assert [c["key"] for c in costs] == ["vultr"]
        assert Decimal(costs[0]["total"]) == fake_vultr.total_cost()
        status = httpx.get(f"{base}/api/v1/status", headers=AUTH).json()
        assert any(w["pid"] == proc.pid for w in status["workers"])
    finally:
        proc.terminate()
        proc.wait(60)
    printed = out.read_text()
    assert proc.returncode == 0, printed
    assert "HTTP API on http://127.0.0.1" in printed
    assert TOKEN not in printed and fake_vultr.token not in printed


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).json() == {"status": "ok"}
    except httpx.HTTPError:
        return False


def _run(base: str, ref: str) -> dict:
    return httpx.get(f"{base}/api/v1/runs/{ref}", headers=AUTH, timeout=10).json()


# --- tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers,said", [
    ({}, "Missing token"),
    ({"Authorization": "Bearer wrong-token-wrong-token-wrong"}, "Wrong token"),
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, "Wrong token"),
    ({"Authorization": f"Basic {TOKEN}"}, "Wrong token"),
    ({"Authorization": "Bearer"}, "Wrong token"),
    ({"Authorization": f"bearer {TOKEN}x"}, "Wrong token"),
])
@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/collect/trigger"), ("GET", "/api/v1/runs"), ("GET", "/api/v1/runs/1"),
    ("GET", "/api/v1/costs"), ("GET", "/api/v1/status"),
])
def test_every_route_but_healthz_needs_a_token(api, headers, said, method, path):
    client = api()
    r = no_traceback(client.request(method, path, headers=headers, json=OLD_BODY))
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"].startswith(f"{said}: send `Authorization: Bearer <token>`")
    nothing_recorded(client)


def test_the_tokens_of_every_variable_are_taken_and_healthz_needs_none(api):
    client = api('schedules = []\n[api]\ntokens_env = ["TEAM_B_TOKEN"]\n')
    assert client.get("/healthz").json() == {"status": "ok"}
    for token in (TOKEN, OTHER):
        r = client.get("/api/v1/runs", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json() == []
    # Without tokens_env, TEAM_B_TOKEN's value is no token.
    assert api().get("/api/v1/runs", headers={"Authorization": f"Bearer {OTHER}"}
                     ).status_code == 401


def test_tokens_compare_in_constant_time_and_are_known_by_their_variable(make_env, tmp_path):
    cfg = tmp_path / "t.toml"
    cfg.write_text('[api]\ntokens_env = ["TEAM_B_TOKEN"]\n')
    found = access.tokens(load_settings(make_env(OPTIINFRA_API_TOKEN=TOKEN, TEAM_B_TOKEN=OTHER,
                                                 OPTIINFRA_CONFIG=str(cfg))))
    assert found.names == ("OPTIINFRA_API_TOKEN", "TEAM_B_TOKEN")
    assert (found.match(TOKEN), found.match(OTHER), found.match(TOKEN + " "),
            found.match(""), found.match(None), found.match("é" * 20)) == (
        "OPTIINFRA_API_TOKEN", "TEAM_B_TOKEN", None, None, None, None)


# --- bad input: 422 with the CLI's own words, 413, 429, 503 ------------------------------------


@pytest.mark.parametrize("body,cli_args", [
    ({"provider": "nimbus"}, ["collect", "nimbus"]),
    ({"provider": "vultr", "data_types": ["bills"]}, ["collect", "vultr", "--types", "bills"]),
    ({"provider": "aws", "data_types": ["resource"]}, ["collect", "aws", "--types", "resource"]),
    ({"provider": "vultr", "customer_id": "ghost"}, ["collect", "vultr", "--customer", "ghost"]),
    ({"provider": "vultr", "customer_id": "no/such"},
     ["collect", "vultr", "--customer", "no/such"]),
])
def test_unknown_provider_customer_or_type_is_422_with_the_clis_message(api, body, cli_args):
    client = api()
    r = no_traceback(client.post("/api/v1/collect/trigger", json=body, headers=AUTH))
    assert r.status_code == 422, r.text
    said = r.json()["detail"]
    cli = subprocess.run(CLI + cli_args, env=dict(os.environ, **client.env), capture_output=True,
                         text=True, timeout=60)
    assert cli.returncode == 2 and said in cli.stderr, (said, cli.stderr)
    nothing_recorded(client)


@pytest.mark.parametrize("body,said", [
    ('{"provider":', "The body is not valid JSON. Send an object such as"),
    ("[1, 2]", "The body is not a JSON object."),
    ('"vultr"', "The body is not a JSON object."),
    ("", "The body is missing."),
    ("{}", "provider: Field required."),
    ('{"provider": "vultr", "customer_id": 42}', "customer_id: Input should be a valid string."),
    ('{"provider": "vultr", "data_types": "cost"}', "data_types: Input should be a valid list."),
    ('{"provider": "vultr", "data_types": [null]}', "data_types.0: Input should be a valid string"),
    ('{"provider": "vultr", "async_mode": "yes"}', "async_mode: Input should be a valid boolean."),
    ('{"provider": "vultr", "customer": "acme"}', "customer: not a field of this request (fields: "
                                                  "provider, customer_id, data_types, async_mode)."),
    ('{"provider": ["vultr"]}', "provider: Input should be a valid string."),
])
def test_a_malformed_body_is_422_saying_what_to_send(api, body, said):
    client = api()
    r = no_traceback(client.post("/api/v1/collect/trigger", content=body,
                                 headers=dict(AUTH, **{"Content-Type": "application/json"})))
    assert r.status_code == 422 and r.json()["detail"].startswith(said), r.text
    nothing_recorded(client)


def test_a_body_over_64_kib_is_413_with_or_without_its_length(api):
    client = api()
    big = json.dumps(dict(OLD_BODY, padding="x" * 65536))
    r = no_traceback(client.post("/api/v1/collect/trigger", content=big, headers=AUTH))
    assert r.status_code == 413 and "larger than 64 KiB" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(70):
            yield b" " * 1024

    r = no_traceback(client.post("/api/v1/collect/trigger", content=chunks(),
                                 headers=dict(AUTH, **{"Content-Type": "application/json"})))
    assert r.status_code == 413
    r = client.post("/api/v1/collect/trigger", content=" " * 60000 + json.dumps(OLD_BODY),
                    headers=dict(AUTH, **{"Content-Type": "application/json"}))
    assert r.status_code == 200, r.text  # just under the limit: taken


@pytest.mark.parametrize("query,said", [
    ("status=lost", "status: Input should be 'queued', 'running'"),
    ("limit=0", "limit: Input should be greater than or equal to 1."),
    ("limit=10001", "limit: Input should be less than or equal to 10000."),
    ("limit=ten", "limit: Input should be a valid integer"),
    ("provider=nimbus", "Unknown provider 'nimbus'. Supported providers: aws, azure, gcp, vultr."),
])
def test_bad_history_filters_are_422(api, query, said):
    r = no_traceback(api().get(f"/api/v1/runs?{query}", headers=AUTH))
    assert r.status_code == 422 and r.json()["detail"].startswith(said), r.text


@pytest.mark.parametrize("query,said", [
    ("by=week", "by: Input should be 'provider', 'service', 'day' or 'customer'."),
    ("since=yesterday", "since: Input should be a valid date"),
])
def test_bad_costs_queries_are_422(api, query, said):
    r = no_traceback(api().get(f"/api/v1/costs?{query}", headers=AUTH))
    assert r.status_code == 422 and r.json()["detail"].startswith(said), r.text


def test_an_unknown_run_is_404(api):
    client = api()
    for ref in ("99", "no-such-task", "9" * 40):
        r = no_traceback(client.get(f"/api/v1/runs/{ref}", headers=AUTH))
        assert r.status_code == 404 and f"id or task id {ref!r}" in r.json()["detail"]


def test_triggers_are_limited_per_token_per_minute(api):
    clock = Clock()
    client = api('schedules = []\n[api]\ntokens_env = ["TEAM_B_TOKEN"]\ntriggers_per_minute = 2\n',
                 limit=TriggerLimit(2, clock))
    post = lambda token: client.post("/api/v1/collect/trigger", json=OLD_BODY,  # noqa: E731
                                     headers={"Authorization": f"Bearer {token}"})
    assert [post(TOKEN).status_code for _ in range(2)] == [200, 200]
    clock.now += 30
    r = no_traceback(post(TOKEN))
    assert r.status_code == 429 and r.headers["retry-after"] == "30"
    assert "More than 2 triggers in a minute with the token of OPTIINFRA_API_TOKEN" in r.text
    assert post(OTHER).status_code == 200  # another token has its own count
    clock.now += 30
    assert post(TOKEN).status_code == 200  # the first two are a minute old
    client.rt.history()
    assert CollectionRun.select().count() == 4  # the refused one recorded nothing


def test_the_rate_comes_from_the_settings(api):
    client = api('schedules = []\n[api]\ntriggers_per_minute = 1\n')
    codes = [client.post("/api/v1/collect/trigger", json=OLD_BODY, headers=AUTH).status_code
             for _ in range(2)]
    assert codes == [200, 429]


def test_the_queue_down_is_503_naming_what_to_check_and_records_nothing(api):
    port = free_port()
    client = api(REDIS_URL=f"redis://:pw-secret-1234@127.0.0.1:{port}/0")
    r = no_traceback(client.post("/api/v1/collect/trigger", json=OLD_BODY, headers=AUTH))
    assert r.status_code == 503, r.text
    detail = r.json()["detail"]
    assert f"The queue is unreachable: Redis at 127.0.0.1:{port}, from REDIS_URL" in detail
    assert "Check that Redis is running there" in detail and "pw-secret-1234" not in detail
    client.rt.history()
    assert CollectionRun.select().count() == 0


def test_the_history_down_is_503_naming_what_to_check(api):
    port = free_port()
    client = api(DATABASE_URL=f"postgresql://u:pw-secret-1234@127.0.0.1:{port}/db")
    for method, path in (("POST", "/api/v1/collect/trigger"), ("GET", "/api/v1/runs"),
                         ("GET", "/api/v1/runs/1")):
        r = no_traceback(client.request(method, path, json=OLD_BODY, headers=AUTH))
        assert r.status_code == 503, r.text
        assert "Check DATABASE_URL and that the server is running" in r.json()["detail"]
        assert "pw-secret-1234" not in r.text


def test_a_bug_is_500_without_a_traceback_and_logged(api, monkeypatch):
    client = api()
    from optiinfra_tui.worker import monitor

    def broken(rt):  # isolates the handler: the snapshot itself is tested elsewhere
        raise RuntimeError(f"boom {TOKEN}")

    monkeypatch.setattr(monitor, "snapshot", broken)
    r = no_traceback(client.get("/api/v1/status", headers=AUTH))
    assert r.status_code == 500
    assert r.json()["detail"].startswith("Unexpected error (RuntimeError: boom ")
    assert str(client.rt.settings.log_path) in r.json()["detail"]


def test_async_mode_false_answers_with_the_run_as_it_is_after_the_wait(api):
    client = api('schedules = []\n[api]\nwait_timeout = 1\n')  # no consumer: it stays queued
    r = client.post("/api/v1/collect/trigger", json=dict(OLD_BODY, async_mode=False),
                    headers=AUTH)
    answer = r.json()
    assert r.status_code == 200 and answer["status"] == "queued" and not answer["async_mode"]
    assert answer["message"] == (f"Run {answer['run_id']} is still queued after 1 s ([api] "
                                 f"wait_timeout); it goes on: GET /api/v1/runs/{answer['run_id']} "
                                 "tells how it ends.")
    assert answer["run"]["task_id"] == answer["task_id"]


# --- the description ---------------------------------------------------------------------------


def test_openapi_describes_every_route_the_body_and_the_bearer_scheme(api):
    client = api()
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {"/healthz", "/api/v1/collect/trigger", "/api/v1/runs/{ref}",
                                  "/api/v1/runs", "/api/v1/costs", "/api/v1/status"}
    body = spec["components"]["schemas"]["TriggerRequest"]["properties"]
    assert set(body) == {"provider", "customer_id", "data_types", "async_mode"}
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "401" in spec["paths"]["/api/v1/collect/trigger"]["post"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_documented_shapes_are_the_serialisers_own():
    from datetime import datetime

    row = RunRow(1, "t", "success", "c", "vultr", "cost", "api", 1, 4, 5, 2, None, None,
                 datetime(2026, 1, 1), None, None, None, None, None, None)
    assert list(Run.model_fields) == list(row.to_json())
    line = CostTotal("Compute", "USD", Decimal("1.5"), Decimal("0"), 3, provider="vultr")
    assert list(CostLine.model_fields) == list(costs_json([line])[0])  # by service
    by_provider = CostTotal("vultr", "USD", Decimal("1.5"), Decimal("0"), 3)
    assert set(costs_json([by_provider])[0]) == set(CostLine.model_fields) - {"provider"}


# --- starting it -------------------------------------------------------------------------------


def _start(args: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    (tmp_path / "c.toml").write_text(env.pop("toml", "schedules = []\n"))
    full = worker_env(os.environ, OPTIINFRA_HOME=tmp_path / "home",
                      OPTIINFRA_CONFIG=tmp_path / "c.toml", **env)
    return subprocess.run(CLI + args, env=full, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,env,said", [
    (["--headless", "--api-port", "{port}"], {},
     "The HTTP API (--api-port) needs a token: export OPTIINFRA_API_TOKEN=<a token>"),
    (["--headless"], {"toml": "[api]\nport = {port}\n"}, "needs a token"),
    (["--headless", "--api-port", "{port}"], {"OPTIINFRA_API_TOKEN": "short"},
     "OPTIINFRA_API_TOKEN is 5 characters long: a token needs at least 16"),
    (["--headless", "--api-port", "{port}"],
     {"OPTIINFRA_API_TOKEN": TOKEN, "toml": '[api]\ntokens_env = ["UNSET_TOKEN"]\n'},
     "[api] tokens_env names UNSET_TOKEN, which is not set"),
    (["--headless", "--metrics-port", "{port}", "--metrics-host", "0.0.0.0"], {},
     "--metrics-host 0.0.0.0: the Prometheus listener would be reachable from other hosts, and "
     "no token is set. Export OPTIINFRA_API_TOKEN"),
    (["--api-port", "{port}"], {}, "--api-port only applies with --headless"),
    (["--headless", "--api-host", "0.0.0.0"], {}, "--api-host needs --api-port"),
    (["--api-port", "{port}", "history"], {}, "not to `history`"),
])
def test_a_listener_that_would_be_open_refuses_to_start(tmp_path, args, env, said):
    port = str(free_port())
    env = {k: v.replace("{port}", port) for k, v in env.items()}
    r = _start([a.replace("{port}", port) for a in args], tmp_path, **env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert said in r.stderr and "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "home" / "history.db").exists()  # refused before anything started


def test_a_taken_port_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _start(["--headless", "--workers", "1", "--api-port", str(port)], tmp_path,
                   OPTIINFRA_API_TOKEN=TOKEN)
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"--api-host 127.0.0.1 --api-port {port}: can't listen there" in r.stderr
    assert "Traceback" not in r.stdout + r.stderr





def test_without_the_api_extra_it_names_the_install_command(tmp_path):
    (tmp_path / "c.toml").write_text("schedules = []\n")
    env = worker_env(os.environ, OPTIINFRA_HOME=tmp_path / "home", OPTIINFRA_API_TOKEN=TOKEN,
                     OPTIINFRA_CONFIG=tmp_path / "c.toml")
    r = subprocess.run([*cli_without("fastapi", "uvicorn"), "--headless", "--api-port",
                        str(free_port())], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert 'needs the api extra (fastapi, uvicorn not installed). Install it: pip install ' \
           '"optiinfra-tui[api]"' in r.stderr


def test_metrics_beyond_loopback_need_the_token(make_env):
    from optiinfra_tui.worker.telemetry import serve

    settings = load_settings(make_env(OPTIINFRA_API_TOKEN=TOKEN))
    port = free_port()
    server = serve(Runtime(settings), port, "127.0.0.1", access.tokens(settings))
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        assert httpx.get(url).status_code == 401
        assert httpx.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
        ok = httpx.get(url, headers=AUTH)
        assert ok.status_code == 200 and "optiinfra_build_info" in ok.text
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("192.168.1.5", False), ("myhost", False),
])
def test_what_counts_as_loopback(host, loopback):
    assert access.is_loopback(host) is loopback
