"""The Blob service of one storage account, as the Azure double serves it (path-style, as Azurite
and the other emulators do: https://127.0.0.1:<port>/<account>/<container>/<blob>).

What a reader of Cost Management exports meets: List Blobs (XML, `prefix`, `marker`,
`maxresults`, NextMarker paging), Get Blob and Get Blob Properties (HEAD) with ETag,
Last-Modified and byte ranges, bearer tokens for https://storage.azure.com only, the
x-ms-version header they require, and Azure's XML errors (ContainerNotFound, BlobNotFound,
AuthorizationPermissionMismatch, InvalidAuthenticationInfo).
"""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import format_datetime
from urllib.parse import unquote
from xml.sax.saxutils import escape

STORAGE_AUDIENCE = "https://storage.azure.com"
OAUTH_VERSION = "2017-11-09"  # the first x-ms-version that takes a bearer token
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class Blob:
    data: bytes
    etag: str
    modified: datetime
    content_type: str


class BlobService:
    """One storage account's containers, answered for the FakeAzure that holds it."""

    def __init__(self, fake, account: str = "optiinfrabilling") -> None:
        self.fake = fake
        self.account = account
        self.containers: dict[str, dict[str, Blob]] = {}
        self.page_size = 5000  # List Blobs' own maximum
        self.denied = False  # the app has no data role on the account: 403
        self._clock = datetime(2026, 3, 15, 6, 0, tzinfo=UTC)

    @property
    def url(self) -> str:
        return f"{self.fake.url}/{self.account}"

    # --- the content ------------------------------------------------------------------------------

    def put(self, container: str, name: str, data: bytes,
            content_type: str = "application/octet-stream") -> Blob:
        """Write a blob (the container is made if needed); each write is a second later than
        the last, so Last-Modified orders them."""
        self._clock += timedelta(seconds=1)
        blob = Blob(data, f'"0x8DC{uuid.uuid4().hex[:12].upper()}"', self._clock, content_type)
        with self.fake._lock:
            self.containers.setdefault(container, {})[name] = blob
        return blob

    def delete(self, container: str, name: str) -> None:
        with self.fake._lock:
            del self.containers[container][name]

    # --- requests ---------------------------------------------------------------------------------

    def serves(self, path: str) -> bool:
        return path.startswith(f"/{self.account}/")

    def answer(self, method: str, path: str, query: dict[str, str],
               headers: Message) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) for one request on the account."""
        if not self.fake.token_for(headers.get("Authorization", ""), STORAGE_AUDIENCE):
            return _error(401, "InvalidAuthenticationInfo",
                          "Server failed to authenticate the request. Please refer to the "
                          "information in the www-authenticate header.",
                          {"WWW-Authenticate": "Bearer authorization_uri=https://login."
                                               "microsoftonline.com/tenant/oauth2/authorize "
                                               f"resource_id={STORAGE_AUDIENCE}"})
        version = headers.get("x-ms-version", "")
        if not version:
            return _error(400, "MissingRequiredHeader",
                          "An HTTP header that's mandatory for this request is not specified.")
        if version < OAUTH_VERSION:
            return _error(400, "InvalidHeaderValue", "The value for one of the HTTP headers is "
                          "not in the correct format.")
        if self.denied:
            return _error(403, "AuthorizationPermissionMismatch",
                          "This request is not authorized to perform this operation using this "
                          "permission.")
        container, _, name = path[len(self.account) + 2:].partition("/")
        blobs = self.containers.get(container)
        if blobs is None:
            return _error(404, "ContainerNotFound", "The specified container does not exist.")
        if not name:
            if method != "GET" or query.get("restype") != "container" or (
                    query.get("comp") != "list"):
                return _error(400, "UnsupportedQueryParameter",
                              "One of the query parameters specified is not supported.")
            return self._list(container, blobs, query)
        blob = blobs.get(unquote(name))
        if blob is None or method not in ("GET", "HEAD"):
            return _error(404, "BlobNotFound", "The specified blob does not exist.")
        return _serve(blob, headers.get("Range", ""))

    def _list(self, container: str, blobs: dict[str, Blob],
              query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        prefix = query.get("prefix", "")
        size = min(int(query.get("maxresults") or 5000), self.page_size)
        after = base64.urlsafe_b64decode(query["marker"]).decode() if query.get("marker") else ""
        names = sorted(n for n in blobs if n.startswith(prefix) and n >= after)
        page, rest = names[:size], names[size:]
        next_marker = base64.urlsafe_b64encode(rest[0].encode()).decode() if rest else ""
        items = "".join(
            f"<Blob><Name>{escape(n)}</Name><Properties>"
            f"<Creation-Time>{_http_date(blobs[n].modified)}</Creation-Time>"
            f"<Last-Modified>{_http_date(blobs[n].modified)}</Last-Modified>"
            f"<Etag>{blobs[n].etag}</Etag><Content-Length>{len(blobs[n].data)}</Content-Length>"
            f"<Content-Type>{blobs[n].content_type}</Content-Type><BlobType>BlockBlob</BlobType>"
            f"<AccessTier>Hot</AccessTier><LeaseStatus>unlocked</LeaseStatus>"
            f"<LeaseState>available</LeaseState></Properties><Metadata /></Blob>"
            for n in page)
        body = (f'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint='
                f'"{escape(self.url)}/" ContainerName="{escape(container)}">'
                f"<Prefix>{escape(prefix)}</Prefix>"
                + (f"<Marker>{escape(query['marker'])}</Marker>" if query.get("marker") else "")
                + f"<MaxResults>{size}</MaxResults><Blobs>{items}</Blobs>"
                f"<NextMarker>{next_marker}</NextMarker></EnumerationResults>").encode()
        return 200, body, _headers({"Content-Type": "application/xml", "Content-Length":
                                    str(len(body))})


def _serve(blob: Blob, ranged: str) -> tuple[int, bytes, dict[str, str]]:
    """Get Blob: the whole blob, or the byte range asked for (206)."""
    head = {"Content-Type": blob.content_type, "ETag": blob.etag,
            "Last-Modified": _http_date(blob.modified), "Accept-Ranges": "bytes",
            "x-ms-blob-type": "BlockBlob"}
    found = _RANGE_RE.match(ranged)
    total = len(blob.data)
    if not found:
        return 200, blob.data, _headers({**head, "Content-Length": str(total)})
    first = int(found[1])
    last = min(int(found[2]) if found[2] else total - 1, total - 1)
    if first >= total:
        return _error(416, "InvalidRange", "The range specified is invalid for the current "
                      "size of the resource.", {"Content-Range": f"bytes */{total}"})
    part = blob.data[first:last + 1]
    return 206, part, _headers({**head, "Content-Length": str(len(part)),
                                "Content-Range": f"bytes {first}-{last}/{total}"})


def _headers(extra: dict[str, str]) -> dict[str, str]:
    return {"x-ms-request-id": str(uuid.uuid4()), "x-ms-version": "2023-11-03",
            "Server": "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0", **extra}


def _error(status: int, code: str, message: str,
           extra: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{code}</Code><Message>'
            f"{escape(message)}\nRequestId:{uuid.uuid4()}\nTime:2026-03-15T06:00:00.0000000Z"
            f"</Message></Error>").encode()
    return status, body, _headers({"Content-Type": "application/xml", "x-ms-error-code": code,
                                   "Content-Length": str(len(body)), **(extra or {})})


def _http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)
