"""The API's request body and the shapes of its answers, for validation and /openapi.json.

Answers are written by the CLI's `--json` serialisers (RunRow.to_json, Snapshot.to_json,
formats.costs_json); these models only describe them, and a test keeps the two the same.
"""

from __future__ import annotations

from datetime import datetime
from typing import get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from optiinfra_tui import providers
from optiinfra_tui.worker.runs import RunRow


def example_body() -> dict:
    """A trigger's body, for the provider that schedules fall back to (else the first)."""
    specs = providers.specs()
    spec = next((s for s in specs.values() if s.implicit), next(iter(specs.values())))
    return {"provider": spec.name, "customer_id": "acme", "data_types": list(spec.default_types),
            "async_mode": True}


class TriggerRequest(BaseModel):
    """The old stack's body for POST /api/v1/collect/trigger."""

    model_config = ConfigDict(extra="forbid", strict=True,
                              json_schema_extra={"examples": [example_body()]})

    provider: str = Field(description=f"An installed provider: {', '.join(providers.names())}.")
    customer_id: str | None = Field(None, description="Default: DEFAULT_CUSTOMER_ID.")
    data_types: list[str] | None = Field(
        None, description="The provider's data types (default: its default types).")
    async_mode: bool = Field(True, description="false: wait for the run and answer with its "
                                               "outcome ([api] wait_timeout at most).")


# A run as `history --json` prints it: RunRow's fields, its data types as a list.
Run = create_model("Run", __doc__="A collection run, as `history --json` prints it.", **{
    name: (list[str] if name == "data_types" else kind, ...)
    for name, kind in get_type_hints(RunRow).items()})


class TriggerAnswer(BaseModel):
    """The old stack's answer, plus the run's id (and, with async_mode false, the run)."""

    task_id: str
    run_id: int
    status: str = Field(description='"queued"; with async_mode false, the run\'s status')
    message: str
    started_at: datetime = Field(description="When the run was queued")
    async_mode: bool
    run: Run | None = Field(None, description="With async_mode false: the run as it ended")


class CostLine(BaseModel):
    """One line of `costs --json`: amounts exact, as decimal strings with at least the
    currency's digits; `provider` by service only."""

    key: str
    provider: str | None = None
    currency: str
    billed_cost: str
    estimated_cost: str
    total: str
    rows: int


class Error(BaseModel):
    """Every error answer: what went wrong and what to do, never a traceback."""

    detail: str
