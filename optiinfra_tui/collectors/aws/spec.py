"""AWS's provider spec, the light part its entry point names: importing it imports no botocore
(see optiinfra_tui.providers)."""

from __future__ import annotations

from collections.abc import Mapping

from optiinfra_tui.collectors.aws import AwsAccount, max_requests
from optiinfra_tui.providers import Account, DefaultSchedule, Field, Option, ProviderSpec


def _aws_account(account: Account, env: Mapping[str, str]):
    return AwsAccount(**dict(account.values))


def _aws_missing(account: Account, env: Mapping[str, str]) -> str | None:
    for key in ("access_key_id_env", "secret_access_key_env"):
        var = account.get(key)
        if var and not env.get(var, "").strip():
            return var
    # Otherwise botocore's chain: only a half-set standard pair is known to be missing
    # without a network call (a profile or an instance role is found at collection).
    if (account.standard and env.get("AWS_ACCESS_KEY_ID", "").strip()
            and not env.get("AWS_SECRET_ACCESS_KEY", "").strip()):
        return "AWS_SECRET_ACCESS_KEY"
    return None


AWS = ProviderSpec(
    name="aws",
    title="AWS",
    data_types=("cost", "export"),
    default_types=("cost",),
    fields={
        "access_key_id_env": Field("the variable holding the access key id", env=True,
                                   secret=True),
        "secret_access_key_env": Field("the variable holding the secret access key", env=True,
                                       secret=True),
        "role_arn": Field("an IAM role to assume (optional)"),
        "export_uri": Field("the Data Export, s3://bucket/prefix/export-name (optional)",
                            standard="AWS_EXPORT_URI"),
    },
    collector="optiinfra_tui.collectors.aws.collector:AwsCollector",
    # Cost Explorer bills every request: four runs a day, not one every 15 minutes.
    schedules=(DefaultSchedule(("cost",), interval=6 * 3600),),
    extra="aws",
    sdk=("botocore",),
    options=(Option("AWS_CE_MAX_REQUESTS", "Cost Explorer requests one run may send",
                    max_requests),),
    # botocore's default chain, as far as it can be seen without a network call; on an
    # instance role alone, an empty [customers.<default id>.aws] table says to use it.
    detect=("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_EXPORT_URI",
            "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
    secret_vars=("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    colour="#ffaf00",
    parse=_aws_account,
    missing=_aws_missing,
)
