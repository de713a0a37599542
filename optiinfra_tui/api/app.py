"""The FastAPI app: the trigger, runs, costs, status and health routes, over one Runtime.

Each answer is the CLI's `--json` document (formats.json_text); each error is
`{"detail": "..."}` saying what to do, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import date
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Literal

import peewee
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from optiinfra_tui import providers
from optiinfra_tui.access import Tokens, bearer
from optiinfra_tui.api.limits import BodyLimit, TriggerLimit
from optiinfra_tui.api.schemas import (
    CostLine,
    Error,
    Run,
    TriggerAnswer,
    TriggerRequest,
    example_body,
)
from optiinfra_tui.errors import BackendUnavailable, ConfigError, OptiInfraError, TransientError
from optiinfra_tui.formats import costs_json, error_text, json_text, rfc3339
from optiinfra_tui.settings import (
    API_TOKEN_VAR,
    check_data_type_names,
    validate_data_types,
)
from optiinfra_tui.storage.history import STATUSES, CollectionRun, unreachable
from optiinfra_tui.text import short_error
from optiinfra_tui.worker import monitor, runs
from optiinfra_tui.worker.collection import request_collection
from optiinfra_tui.worker.runs import RunRow
from optiinfra_tui.worker.runtime import Runtime

log = logging.getLogger("optiinfra.api")

SEND_JSON = (f"Send an object such as {json.dumps(example_body())} with `Content-Type: "
             "application/json`.")
ERRORS = {401: {"model": Error}, 413: {"model": Error}, 422: {"model": Error},
          429: {"model": Error}, 503: {"model": Error}}
WAIT_POLL = 0.2


def _version() -> str:
    try:
        return version("optiinfra-tui")
    except PackageNotFoundError:
        return "unknown"


def document(doc: object, status: int = 200, headers: dict | None = None) -> Response:
    """A JSON answer written as `--json` writes it."""
    return Response(json_text(doc), status, headers, media_type="application/json")


def error(status: int, detail: str, headers: dict | None = None) -> Response:
    return document({"detail": detail}, status, headers)


def build_app(rt: Runtime, tokens: Tokens, limit: TriggerLimit | None = None) -> FastAPI:
    """The API over `rt`, taking `tokens`; triggers counted by `limit` (the settings' rate)."""
    settings = rt.settings
    limit = limit or TriggerLimit(settings.api.triggers_per_minute)
    app = FastAPI(
        title="OptiInfra API", version=_version(),
        description="Start collections and read what they did: the same data as "
                    "`optiinfra-tui ... --json`. Every route but /healthz needs "
                    "`Authorization: Bearer <token>`.")
    # Outermost first: a caller without a token learns nothing, not even how its body fared.
    app.add_middleware(BodyLimit)
    app.add_middleware(TokenGate, tokens=tokens)
    # The gate enforces the token; this only shows the scheme (and "Authorize") in the docs.
    authorised = [Depends(HTTPBearer(auto_error=False, description=(
        f"{API_TOKEN_VAR}, or a variable [api] tokens_env names")))]

    @app.get("/healthz", summary="Liveness, for load balancers (no token)")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/api/v1/collect/trigger", summary="Start a collection", response_model=None,
              dependencies=authorised, responses={200: {"model": TriggerAnswer}, **ERRORS})
    async def trigger(body: TriggerRequest, request: Request) -> Response:
        who = request.state.caller
        provider = providers.spec(body.provider).name  # the CLI's checks, in its order
        check_data_type_names(body.data_types or [])
        types = validate_data_types(provider, body.data_types)
        customer_id = settings.default_customer_id if body.customer_id is None else body.customer_id
        wait = limit.take(who)
        if wait is not None:
            return error(429, f"More than {limit.per_minute} triggers in a minute with the token "
                              f"of {who} ([api] triggers_per_minute): try again in {wait:.0f} s.",
                         {"Retry-After": f"{wait:.0f}"})
        run = await run_in_threadpool(request_collection, rt, customer_id, provider, types,
                                      "api")
        log.info("run %d queued through the API (%s): %s/%s %s", run.id, who, provider,
                 customer_id, ",".join(types))
        answer = {"task_id": run.task_id, "run_id": run.id, "status": run.status,
                  "message": f"Collection of {provider} {','.join(types)} for {customer_id} "
                             f"queued as run {run.id}.",
                  "started_at": rfc3339(run.queued_at), "async_mode": body.async_mode}
        if not body.async_mode:
            run = await _wait(run.id, settings.api.wait_timeout)
            answer.update(status=run.status, message=_outcome(run, settings.api.wait_timeout),
                          run=RunRow.of(run).to_json())
        return document(answer)

    @app.get("/api/v1/runs/{ref}", summary="One run, by its id or its task id",
             response_model=None, dependencies=authorised,
             responses={200: {"model": Run}, 404: {"model": Error}, **ERRORS})
    def run(ref: str) -> Response:
        rt.history()
        by_id = ref.isdigit() and len(ref) <= 18  # past that no id: the database's integer
        found = CollectionRun.get_or_none(
            (CollectionRun.id == int(ref)) if by_id else (CollectionRun.task_id == ref))
        if found is None:
            return error(404, f"No run has the id or task id {ref!r}. GET /api/v1/runs lists the "
                              "latest.")
        return document(RunRow.of(found).to_json())

    @app.get("/api/v1/runs", summary="Runs, newest first (`history --json`)",
             response_model=None, dependencies=authorised,
             responses={200: {"model": list[Run]}, **ERRORS})
    def history(status: Annotated[Literal[STATUSES] | None, Query()] = None,  # type: ignore[valid-type]
                provider: str | None = None, customer: str | None = None,
                limit: Annotated[int, Query(ge=1, le=10000)] = 20) -> Response:
        if provider is not None:
            providers.spec(provider)
        rt.history()
        found = runs.list_runs(status=status, provider=provider, customer_id=customer,
                               limit=limit)
        return document([RunRow.of(r).to_json() for r in found])

    @app.get("/api/v1/costs", summary="What has been collected (`costs --json`)",
             response_model=None, dependencies=authorised,
             responses={200: {"model": list[CostLine]}, **ERRORS})
    def costs(by: Literal["provider", "service", "day", "customer"] = "provider",
              since: date | None = None) -> Response:
        return document(costs_json(rt.metrics().costs(by=by, since=since)))

    @app.get("/api/v1/status", summary="Backends, queue, workers, schedules (`status --json`)",
             response_model=None, dependencies=authorised, responses=ERRORS)
    def status() -> Response:
        return document(monitor.snapshot(rt).to_json())

    _handle_errors(app, rt)
    return app


async def _wait(run_id: int, timeout: float) -> CollectionRun:
    """The run once it is final, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        run = await run_in_threadpool(runs.get_run, run_id)
        if run.is_final or time.monotonic() >= deadline:
            return run
        await asyncio.sleep(WAIT_POLL)


def _outcome(run: CollectionRun, timeout: float) -> str:
    if not run.is_final:
        return (f"Run {run.id} is still {run.status} after {timeout:g} s ([api] wait_timeout); "
                f"it goes on: GET /api/v1/runs/{run.id} tells how it ends.")
    said = f"Run {run.id} {run.status}: {run.metrics_collected} rows"
    problem = error_text(run.error_kind, run.error_message)
    return f"{said}. {problem}" if problem and run.status != "success" else f"{said}."


class TokenGate:
    """ASGI middleware: every path but OPEN needs a token (request.state.caller names its
    variable); anything else is 401 before the request is read."""

    OPEN = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

    def __init__(self, app, tokens: Tokens) -> None:
        self.app, self.tokens = app, tokens

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN:
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization")
        found = self.tokens.match(bearer(header.decode("latin-1") if header else None))
        if found is None:
            what = "Wrong token" if header else "Missing token"
            client = scope.get("client") or ("?",)
            log.warning("%s from %s on %s %s", what.lower(), client[0], scope["method"],
                        scope["path"])
            response = error(401, f"{what}: send `Authorization: Bearer <token>` with the value "
                                  f"of {API_TOKEN_VAR} (or of a variable [api] tokens_env "
                                  "names).", {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = found
        await self.app(scope, receive, send)


def _handle_errors(app: FastAPI, rt: Runtime) -> None:
    """Every failure as `{"detail": ...}` with its status; a bug's traceback goes to the log."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return error(422, validation_message(exc))

    @app.exception_handler(ConfigError)
    async def bad_input(request: Request, exc: ConfigError) -> Response:
        return error(422, str(exc))

    @app.exception_handler(BackendUnavailable)
    @app.exception_handler(TransientError)
    async def backend_down(request: Request, exc: OptiInfraError) -> Response:
        return error(503, str(exc))

    @app.exception_handler(peewee.OperationalError)
    @app.exception_handler(peewee.InterfaceError)
    async def history_down(request: Request, exc: Exception) -> Response:
        return error(503, str(unreachable(rt.settings.database_url, exc)))

    @app.exception_handler(OptiInfraError)
    async def failed(request: Request, exc: OptiInfraError) -> Response:
        return error(500, str(exc))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> Response:
        log.error("API %s %s failed", request.method, request.url.path, exc_info=exc)
        return error(500, f"Unexpected error ({short_error(exc, 80, rt.settings.secrets())}). "
                          f"This is a bug; the details are in {rt.settings.log_path}.")


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's list of problems as one sentence: where, what (never the value sent back)."""
    parts = []
    for problem in exc.errors():
        if problem.get("type") == "json_invalid":
            return f"The body is not valid JSON. {SEND_JSON}"
        if tuple(problem.get("loc", ())) == ("body",):
            what = "missing" if problem.get("type") == "missing" else "not a JSON object"
            return f"The body is {what}. {SEND_JSON}"
        where = ".".join(str(x) for x in problem.get("loc", ()) if x not in ("body", "query",
                                                                             "path"))
        what = problem.get("msg", "invalid")
        if problem.get("type") == "extra_forbidden":
            what = ("not a field of this request (fields: provider, customer_id, data_types, "
                    "async_mode)")
        parts.append(f"{where}: {what}" if where else what)
    return "; ".join(parts) + "."
