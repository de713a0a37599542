"""Alert messages: their bodies (JSON or Slack) and their delivery from the shared outbox.

A message is written to `alert_messages` by the consumer that claimed its alert; any consumer
holding the webhook's URL sends it, each alert's messages in order, retrying with back-off.
The URL is read from the environment at send time and never written anywhere: errors are
described by what happened (an HTTP status, a timeout), never by the exception's text alone.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from optiinfra_tui.errors import backoff
from optiinfra_tui.formats import rfc3339
from optiinfra_tui.settings import Alert
from optiinfra_tui.storage.history import AlertMessage, utcnow
from optiinfra_tui.text import first_line, scrub

if TYPE_CHECKING:  # httpx loads with the first client: a consumer without alerts never needs it
    import httpx

log = logging.getLogger("optiinfra.alerts")

FIRING, RESOLVED = "firing", "resolved"
TIMEOUT, CONNECT_TIMEOUT = 10.0, 5.0  # seconds: one request is bounded by these
MAX_ATTEMPTS = 10  # with the back-off below: about 10 minutes of trying
RETRY_BASE, RETRY_CAP = 2.0, 300.0
# How long a sender holds a message it is sending before another consumer may take it over.
LEASE = timedelta(seconds=60)
# Refusals that a retry can't fix; every other status (and network errors) is retried.
FINAL_STATUSES = frozenset(range(400, 500)) - {408, 425, 429}
PER_PASS = 20  # messages one pass sends at most, so a backlog never holds the thread long


def client() -> httpx.Client:
    """The HTTP client a sender uses: bounded timeouts, redirects not followed."""
    import httpx

    return httpx.Client(timeout=httpx.Timeout(TIMEOUT, connect=CONNECT_TIMEOUT),
                        follow_redirects=False)


def body(alert: Alert, event: str, condition: str, summary: str, details: dict[str, str],
         at: datetime, since: datetime) -> str:
    """The request body for `alert`'s format: our JSON document, or Slack's {"text": ...}."""
    if alert.format == "slack":
        # Slack reads &, < and > as markup: escaped, a summary shows as written.
        text = summary.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        head = (":rotating_light: *OptiInfra alert*" if event == FIRING
                else ":white_check_mark: *OptiInfra resolved*")
        return json.dumps({"text": f"{head} ({alert.name}): {text}"})
    return json.dumps({"source": "optiinfra-tui", "alert": alert.name, "event": event,
                       "condition": condition.split(":", 1)[0], "key": condition,
                       **details, "summary": summary,
                       "since": rfc3339(since.replace(microsecond=0)),
                       "at": rfc3339(at.replace(microsecond=0))})


def queue(alert: Alert, event: str, condition: str, text: str) -> AlertMessage:
    """Put one message in the outbox (the caller holds the claim's transaction)."""
    return AlertMessage.create(alert=alert.name, condition=condition, event=event, body=text,
                               created_at=utcnow(), due_at=utcnow())


def deliver(client: httpx.Client, alerts: tuple[Alert, ...], urls: dict[str, str],
            sender: str, clock: Callable[[], datetime] = utcnow) -> int:
    """Send each alert's due messages, oldest first, stopping at one that fails (a recovery
    never arrives before its alert); returns how many were sent. `clock` says when a
    message is due: the same for every sender, real time unless a test brings its own."""
    sent = 0
    for alert in alerts:
        url = urls.get(alert.name)
        while url and sent < PER_PASS:
            head = (AlertMessage.select()
                    .where(AlertMessage.alert == alert.name, AlertMessage.sent_at.is_null(),
                           AlertMessage.given_up == False)  # noqa: E712
                    .order_by(AlertMessage.id).first())
            now = clock()
            if head is None or head.due_at > now or not _take(head, now, sender):
                break
            error, final = post(client, url, head.body)
            if error is None:
                AlertMessage.update(sent_at=clock(), attempts=head.attempts + 1,
                                    last_error=None).where(AlertMessage.id == head.id).execute()
                log.info("alert %s: %s message for %s sent", alert.name, head.event,
                         head.condition)
                sent += 1
                continue
            _failed(alert, head, error, final, clock())
            break
    return sent


def _take(message: AlertMessage, now: datetime, sender: str) -> bool:
    """Hold `message` for LEASE: True for one sender of all (the unchanged due_at is the claim)."""
    return AlertMessage.update(due_at=now + LEASE, sent_by=sender).where(
        AlertMessage.id == message.id, AlertMessage.sent_at.is_null(),
        AlertMessage.due_at == message.due_at).execute() == 1


def _failed(alert: Alert, message: AlertMessage, error: str, final: bool,
            now: datetime) -> None:
    attempts = message.attempts + 1
    if final or attempts >= MAX_ATTEMPTS:
        AlertMessage.update(attempts=attempts, last_error=error, given_up=True).where(
            AlertMessage.id == message.id).execute()
        log.warning("alert %s: the %s message for %s was not delivered (%s) after %d "
                    "attempt(s); giving up on it. Check the webhook URL in %s.", alert.name,
                    message.event, message.condition, error, attempts, alert.url_env)
        return
    delay = backoff(attempts - 1, RETRY_BASE, RETRY_CAP)
    AlertMessage.update(attempts=attempts, last_error=error,
                        due_at=now + timedelta(seconds=delay)).where(
        AlertMessage.id == message.id).execute()
    log.warning("alert %s: webhook delivery failed (%s), attempt %d of %d; retrying in %.0f s",
                alert.name, error, attempts, MAX_ATTEMPTS, delay)


def post(client: httpx.Client, url: str, text: str) -> tuple[str | None, bool]:
    """POST `text` to `url`: (None, _) when the webhook took it, else (what went wrong, whether
    a retry is pointless). The description never contains the URL."""
    import httpx

    try:
        response = client.post(url, content=text.encode(),
                               headers={"Content-Type": "application/json"})
    except httpx.TimeoutException:
        return "timed out", False
    except httpx.HTTPError as exc:
        parts = urlsplit(url)
        # httpx may quote the URL, or its path (where webhooks keep their token): mask both.
        detail = scrub(first_line(exc, 120), [url, parts.path, parts.query, parts.netloc])
        return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__, False
    if response.is_success:
        return None, False
    return f"the webhook answered HTTP {response.status_code}", (
        response.status_code in FINAL_STATUSES)


def prune(older_than: datetime) -> int:
    """Delete sent (or given-up) messages created before `older_than`."""
    return AlertMessage.delete().where(
        AlertMessage.created_at < older_than,
        AlertMessage.sent_at.is_null(False) | (AlertMessage.given_up == True)).execute()  # noqa: E712
