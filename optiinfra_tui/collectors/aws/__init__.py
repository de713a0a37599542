"""AWS: Cost Explorer (`cost`) and Data Exports in S3 (`export`).

This module stays light (no botocore): what a customer's AWS access is, and the settings the
collector reads. botocore is imported by the submodules, only when AWS collects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from optiinfra_tui.errors import ConfigError, OptiInfraError
from optiinfra_tui.settings import env_int

PROVIDER = "aws"
DATA_TYPES = ("cost", "export")
INSTALL_HINT = 'pip install "optiinfra-tui[aws]"'
# Cost Explorer bills every request ($0.01, each page too): a run stops past this many.
MAX_REQUESTS_VAR = "AWS_CE_MAX_REQUESTS"
DEFAULT_MAX_REQUESTS = 20
# The default customer's Data Export (others name theirs in [customers.<id>.aws] export_uri).
EXPORT_URI_VAR = "AWS_EXPORT_URI"

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ROLE_RE = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
_EXPORT_RE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$")


class RequestBudgetExceeded(OptiInfraError):
    """A run would send more billed requests than its budget allows: it stops, not retried."""

    kind = "budget"


@dataclass(frozen=True)
class AwsAccount:
    """How one customer reaches AWS: names of environment variables (never the secrets), an
    optional role to assume, an optional Data Export. No key names: botocore's default chain."""

    access_key_id_env: str | None = None
    secret_access_key_env: str | None = None
    role_arn: str | None = None
    export_uri: str | None = None

    def __post_init__(self) -> None:
        for name in ("access_key_id_env", "secret_access_key_env"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, str) and _ENV_NAME_RE.match(value)):
                raise ConfigError(f"aws {name} must name an environment variable (the key "
                                  "itself never goes in the configuration).")
        if (self.access_key_id_env is None) != (self.secret_access_key_env is None):
            raise ConfigError("aws: give both access_key_id_env and secret_access_key_env, "
                              "or neither (botocore's default credential chain).")
        if self.role_arn is not None and not _ROLE_RE.match(str(self.role_arn)):
            raise ConfigError(f"aws role_arn {self.role_arn!r} is not an IAM role ARN, e.g. "
                              "arn:aws:iam::111122223333:role/optiinfra-read.")
        if self.export_uri is not None and not _EXPORT_RE.match(str(self.export_uri)):
            raise ConfigError(f"aws export_uri {self.export_uri!r} is not an S3 URI: use "
                              "s3://bucket/prefix/export-name.")

    @property
    def key_vars(self) -> str:
        """Where the keys come from, for messages."""
        if self.access_key_id_env:
            return f"{self.access_key_id_env} / {self.secret_access_key_env}"
        return ("botocore's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                "AWS_PROFILE, the instance role)")


def default_account(env: Mapping[str, str]) -> AwsAccount:
    """The default customer's access: botocore's chain, and the export in AWS_EXPORT_URI."""
    return AwsAccount(export_uri=env.get(EXPORT_URI_VAR, "").strip() or None)


def max_requests(env: Mapping[str, str]) -> int:
    """AWS_CE_MAX_REQUESTS: Cost Explorer requests one run may send (default 20)."""
    return env_int(env, MAX_REQUESTS_VAR, DEFAULT_MAX_REQUESTS, minimum=1, maximum=10_000,
                   meaning="how many Cost Explorer requests ($0.01 each) one run may send")
