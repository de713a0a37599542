"""Azure `export`: a Cost Management FOCUS export in Blob storage, read as AWS's Data Exports are:
ClickHouse reads the files, Python reads only the listing and the manifests.

Cost Management writes each run of an export as
<container>/<folder>/<export name>/<YYYYMMDD-YYYYMMDD>/[<YYYYMMDDHHMM>/]<run id>/manifest.json
beside its part_*.csv.gz (or .parquet) files. Each run lists the manifests (List Blobs, every
page), and for each billing period whose newest manifest changed (by ETag) since it was last
read, has ClickHouse read that run's files (url(), with the app's bearer token) and replace the
period whole.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree

import httpx

from optiinfra_tui.collectors.base import CollectContext
from optiinfra_tui.collectors.fields import decode_json, parse_int
from optiinfra_tui.collectors.focus_sql import (
    Columns,
    described,
    file_format,
    focus_mapping,
    line_id_prefix,
)
from optiinfra_tui.collectors.http import ApiClient
from optiinfra_tui.errors import AuthError, ConfigError, DataError, OptiInfraError, TransientError
from optiinfra_tui.rows import DATA_EXPORT, IMPORT_FILES, REPLACE_WINDOW, Batch, FileImport, Window
from optiinfra_tui.text import first_line

STORAGE_RESOURCE = "https://storage.azure.com"  # the token's audience: any storage account
STORAGE_VERSION = "2023-11-03"  # x-ms-version: a bearer token needs 2017-11-09 or later
MANIFEST = "export:manifest:"  # state key prefix: + YYYY-MM -> the ETag of the manifest read
FOCUS_TYPES = ("focuscost",)  # exportConfig.type of "Cost and usage details (FOCUS)"
MAX_PAGES = 1000  # List Blobs pages (5,000 names each) before a listing is called a loop
MAX_MANIFEST_BYTES = 50_000_000
_PERIOD_RE = re.compile(r"^(\d{4})(\d{2})\d{2}-\d{8}$")  # YYYYMMDD-YYYYMMDD: its start's month
_CONTAINER_RE = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ACCOUNT_RE = re.compile(r"^[a-z0-9]{3,24}$")
EXAMPLE = "https://<account>.blob.core.windows.net/<container>/<folder>/<export name>"


@dataclass(frozen=True)
class ExportLocation:
    """Where an export lives: the storage account's blob endpoint, a container, and the export's
    folder in it (its root folder and name, no trailing slash)."""

    account_url: str  # https://acct.blob.core.windows.net, or https://127.0.0.1:port/acct
    account: str
    container: str
    root: str

    @property
    def container_url(self) -> str:
        return f"{self.account_url}/{self.container}"

    def blob_url(self, name: str) -> str:
        return f"{self.container_url}/{quote(name, safe='/-_.~')}"


def parse_export_uri(uri: str, setting: str) -> ExportLocation:
    """The location in `uri` (https://account.blob.core.windows.net/container/folder/export;
    on a loopback or IP host, as emulators serve it, the account is the path's first part);
    ConfigError naming `setting` when it is not one."""
    parts = urlsplit(uri.strip())
    where = f"{setting} is not a FOCUS export's location: use {EXAMPLE}"
    if parts.scheme != "https" or not parts.hostname:
        # Never echo the value: a URL may carry a SAS token.
        raise ConfigError(f"{where} (https only: the app's token goes with every request).")
    if parts.query or parts.username or parts.password:
        raise ConfigError(f"{where}, with no query (no SAS token: the app's role is the access).")
    segments = [s for s in parts.path.split("/") if s]
    host = parts.hostname
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        raise ConfigError(f"{where} (its port is not a number).") from None
    if _path_style(host):
        if not segments:
            raise ConfigError(f"{where}; on {host} the account comes first in the path.")
        account = segments.pop(0)
        account_url = f"https://{host}{port}/{account}"
    else:
        account = host.split(".", 1)[0]
        account_url = f"https://{host}{port}"
    if not _ACCOUNT_RE.match(account):
        raise ConfigError(f"{where}: {account!r} is not a storage account name (3 to 24 "
                          "lowercase letters and digits).")
    if len(segments) < 2:
        raise ConfigError(f"{where}: name the container and the export's folder in it "
                          "(its folder and the export's name).")
    container, root = segments[0], "/".join(segments[1:])
    if not _CONTAINER_RE.match(container):
        raise ConfigError(f"{where}: {container!r} is not a container name (3 to 63 lowercase "
                          "letters, digits and single hyphens).")
    return ExportLocation(account_url, account, container, root)


def _path_style(host: str) -> bool:
    """Whether the account is in the path, not the host: an IP address or localhost (Azurite
    and other emulators), as Azure's own SDKs decide."""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# --- the listing and the manifests -------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """A manifest blob as List Blobs shows it."""

    name: str
    etag: str
    modified: datetime


def parse_listing(body: bytes, where: str) -> tuple[list[Listed], str]:
    """(the blobs of one List Blobs page, the marker of the next page or '')."""
    try:
        doc = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise DataError(f"{where}: the answer is not List Blobs XML ({exc}).") from None
    if doc.tag != "EnumerationResults":
        raise DataError(f"{where}: the answer is <{doc.tag}>, not <EnumerationResults>.")
    found = []
    for blob in doc.iterfind("Blobs/Blob"):
        name = blob.findtext("Name")
        props = blob.find("Properties")
        etag = props.findtext("Etag") if props is not None else None
        modified = props.findtext("Last-Modified") if props is not None else None
        if not name or not etag or not modified:
            raise DataError(f"{where}: a <Blob> without Name, Etag or Last-Modified.")
        try:
            when = parsedate_to_datetime(modified)
        except (TypeError, ValueError, IndexError):
            raise DataError(f"{where}: {name}: Last-Modified {modified[:40]!r} is not a "
                            "date.") from None
        found.append(Listed(name, etag.strip('"'), when))
    return found, (doc.findtext("NextMarker") or "").strip()


def newest_manifests(api: ApiClient, loc: ExportLocation) -> dict[date, Listed]:
    """Billing period -> its newest manifest, from every page of the export's listing."""
    newest: dict[date, Listed] = {}
    marker, pages, seen = "", 0, set()
    prefix = f"{loc.root}/"
    while True:
        params = {"restype": "container", "comp": "list", "prefix": prefix}
        if marker:
            params["marker"] = marker
        where = f"Azure Blob Storage List Blobs {loc.container_url}?prefix={prefix}"
        blobs, marker = parse_listing(api.get_bytes(loc.container_url, params), where)
        pages += 1
        for blob in blobs:
            folders = blob.name[len(prefix):].split("/")
            period = _PERIOD_RE.match(folders[0]) if blob.name.startswith(prefix) else None
            if folders[-1] != "manifest.json" or period is None:
                continue
            month = date(int(period[1]), int(period[2]), 1)
            known = newest.get(month)
            if known is None or (blob.modified, blob.name) > (known.modified, known.name):
                newest[month] = blob
        if not marker:
            return newest
        if marker in seen or pages >= MAX_PAGES:
            raise DataError(f"{where}: the listing repeated a marker or ran past {MAX_PAGES} "
                            "pages: it is incomplete, so no period is replaced.")
        seen.add(marker)


@dataclass(frozen=True)
class Manifest:
    """What one export run wrote: its files (blob names) and the rows it says they hold."""

    blobs: tuple[str, ...]
    rows: int | None  # None: the manifest doesn't say


def parse_manifest(raw: bytes, loc: ExportLocation, where: str, setting: str) -> Manifest:
    """One run's manifest.json; DataError for one that doesn't parse, ConfigError for an
    export of another dataset than FOCUS."""
    try:
        doc = decode_json(raw) if len(raw) <= MAX_MANIFEST_BYTES else None
    except (ValueError, RecursionError, DataError):
        doc = None
    if not isinstance(doc, dict):
        raise DataError(f"{where} is not a Cost Management export manifest (a JSON object "
                        "expected).")
    config = doc.get("exportConfig")
    kind = config.get("type") if isinstance(config, dict) else None
    if not isinstance(kind, str):
        raise DataError(f"{where}: exportConfig.type is missing: not an export manifest.")
    if kind.lower() not in FOCUS_TYPES:
        raise ConfigError(f"{setting} names a {kind} export ({where}); collect reads the "
                          "'Cost and usage details (FOCUS)' dataset: create a FOCUS export and "
                          "point the setting at it.")
    blobs = doc.get("blobs")
    if not isinstance(blobs, list) or not all(
            isinstance(b, dict) and isinstance(b.get("blobName"), str) for b in blobs):
        raise DataError(f"{where}: blobs must list the run's files by blobName.")
    names = tuple(b["blobName"].strip().lstrip("/") for b in blobs)
    outside = [n for n in names if not n.startswith(f"{loc.root}/") or "/../" in f"/{n}/"]
    if outside:
        # Only the export's own folder is read with the app's token.
        raise DataError(f"{where}: lists {outside[0]!r}, outside the export's folder "
                        f"{loc.root}/ in container {loc.container}.")
    rows = doc.get("dataRowCount")
    if rows is None and all("dataRowCount" in b for b in blobs):
        rows = sum(parse_int(b["dataRowCount"], f"{where}: dataRowCount") for b in blobs)
    return Manifest(names, None if rows is None else parse_int(rows, f"{where}: dataRowCount"))


def mapping(types: Mapping[str, str], fmt: str, period: date, current: date,
            where: str) -> dict[str, str]:
    """cost_lines column -> expression for the FOCUS files whose columns ClickHouse found."""
    c = Columns(described(types), fmt)
    if not c.has("BilledCost"):
        raise DataError(f"{where}: not FOCUS data (no BilledCost column; it has "
                        f"{', '.join(list(types)[:8]) or 'no columns'}).")
    return focus_mapping(c, period, current)


# --- errors: what the storage account's refusals mean ----------------------------------------


def error_code(resp: httpx.Response) -> tuple[str, str]:
    """(code, first line of the message) of a Blob service error: the x-ms-error-code header,
    else the XML body's <Code>; '' where it has none."""
    code, message = resp.headers.get("x-ms-error-code", ""), ""
    try:
        doc = ElementTree.fromstring(resp.content[:100_000])
    except ElementTree.ParseError:
        return code, message
    return code or (doc.findtext("Code") or ""), first_line(doc.findtext("Message") or "", 200)


def refusal(resp: httpx.Response, where: str, loc: ExportLocation, setting: str,
            client_id: str, tenant_setting: str) -> OptiInfraError | None:
    """The error for a refused Blob request, naming what to fix; None for the generic one."""
    status = resp.status_code
    code, message = error_code(resp)
    said = f"{where} was refused (HTTP {status}{' ' + code if code else ''}" + (
        f": {message})" if message else ")")
    account = f"storage account {loc.account}"
    if status == 404 and code == "ContainerNotFound":
        return ConfigError(f"{where}: {account} has no container {loc.container!r}: check "
                           f"{setting} ({EXAMPLE}).")
    if status == 404 and code == "BlobNotFound":
        return TransientError(f"{where}: the blob is gone (the export was rewriting it); the "
                              "next attempt reads its new run.")
    if status == 404:
        return ConfigError(f"{said}: check {setting} ({EXAMPLE}).")
    if status == 403 and code == "AuthorizationPermissionMismatch":
        return AuthError(f"{said}: give app {client_id} the Storage Blob Data Reader role on "
                         f"{account} (or its container {loc.container}), then wait a few "
                         f"minutes for it to apply. The export is {setting}.")
    if status == 403 and code in ("AuthorizationFailure", "AuthorizationSourceIPMismatch"):
        return AuthError(f"{said}: {account} refuses requests from this host: allow it in the "
                         "account's Networking (firewall) settings, or check that app "
                         f"{client_id} has the Storage Blob Data Reader role there.")
    if status in (401, 403):
        return AuthError(f"{said}: the token of app {client_id} is not accepted by {account}: "
                         f"check {tenant_setting} is the tenant of that account, and {setting}.")
    return None


# --- the walk ---------------------------------------------------------------------------------


def collect(api: ApiClient, loc: ExportLocation, ctx: CollectContext, provider: str,
            current: date, headers: Callable[[], Mapping[str, str]],
            setting: str) -> Iterator[Batch]:
    """For each billing period whose newest manifest changed: its files as one import, then
    the period as a replacement (remembering the manifest's ETag)."""
    manifests = newest_manifests(api, loc)
    if not manifests:
        raise ConfigError(f"No export manifest under {loc.container_url}/{loc.root}/: check that "
                          f"{setting} names the export ({EXAMPLE}) and that it has run once "
                          "(Cost Management: Exports, Run now).")
    for period in sorted(manifests):
        listed = manifests[period]
        state_key = f"{MANIFEST}{period:%Y-%m}"
        if ctx.state.get(state_key) == listed.etag:
            continue  # the period as stored is this manifest's
        where = loc.blob_url(listed.name)
        manifest = parse_manifest(api.get_bytes(where), loc, where, setting)
        if manifest.blobs:
            urls = [loc.blob_url(name) for name in manifest.blobs]
            fmt = file_format(urls, where)
            yield Batch(IMPORT_FILES, [FileImport(
                ctx.customer_id, provider, DATA_EXPORT, period, tuple(urls), fmt,
                lambda types, p=period, f=fmt, w=where: mapping(types, f, p, current, w),
                line_id_prefix(period, listed.name.rsplit("/", 2)[-2]), ctx.run_id,  # its run
                ctx.collected_at, headers=headers,
                expected_rows=manifest.rows)])
        yield Batch(REPLACE_WINDOW, [Window(ctx.customer_id, provider, DATA_EXPORT, (period,),
                                            ctx.collected_at, {state_key: listed.etag})])
