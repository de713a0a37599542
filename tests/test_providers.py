"""Providers are plug-ins: entry points name light specs, and everything else (settings, the
TOML file, the CLI, the dashboard, schedules, health) comes from them."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest
from procs import cli_without

from optiinfra_tui import providers
from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
SDKS = ("botocore", "boto3", "google.auth", "azure.identity")


def settings_with(tmp_path, toml: str = "schedules = []\n", **env):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    return load_settings({"OPTIINFRA_HOME": str(tmp_path / "home"), "OPTIINFRA_CONFIG": str(cfg),
                          **env})


def base_env(tmp_path, toml: str = "schedules = []\n", **extra) -> dict:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VULTR_", "AWS_", "REDIS_", "DATABASE_URL", "CLICKHOUSE_URL",
                                "OPTIINFRA_"))}
    return dict(env, OPTIINFRA_HOME=str(tmp_path / "home"), OPTIINFRA_CONFIG=str(cfg),
                AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull,
                AWS_EC2_METADATA_DISABLED="true", **extra)


# --- discovery --------------------------------------------------------------------------------


def test_our_providers_are_entry_points_naming_light_specs():
    found = {ep.name: ep.load() for ep in
             importlib.metadata.entry_points(group=providers.GROUP)}
    assert {"vultr", "aws"} <= set(found)
    for name, spec in found.items():
        assert isinstance(spec, providers.ProviderSpec) and spec.name == name
    assert set(providers.names()) >= {"vultr", "aws"}
    aws = providers.spec("aws")
    assert (aws.data_types, aws.default_types, aws.extra) == (("cost", "export"), ("cost",), "aws")
    assert set(aws.fields) == {"access_key_id_env", "secret_access_key_env", "role_arn",
                               "export_uri"}
    assert aws.collector == "optiinfra_tui.collectors.aws.collector:AwsCollector"


def test_listing_providers_and_loading_settings_import_no_sdk(tmp_path):
    toml = ('schedules = []\n[customers.acme.aws]\naccess_key_id_env = "ACME_KEY"\n'
            'secret_access_key_env = "ACME_SECRET"\n')
    code = (
        "import sys\n"
        "from optiinfra_tui import providers\n"
        "from optiinfra_tui.settings import load_settings\n"
        "from optiinfra_tui.cli import cli\n"
        "print(list(providers.names()))\n"
        "s = load_settings()\n"
        "print(sorted(s.customer('acme').accounts), s.missing_credential('acme', 'aws'))\n"
        f"print([m for m in sys.modules if m.split('.')[0] in {[s.split('.')[0] for s in SDKS]}])\n"
        "from optiinfra_tui.collectors import get_collector\n"
        "get_collector('aws', s, 'acme').close()\n"
        "print('botocore' in sys.modules)\n")
    env = base_env(tmp_path, toml, AWS_PROFILE="x", ACME_KEY="AKIAEXAMPLE", ACME_SECRET="s")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    names, accounts, imported, after = r.stdout.splitlines()
    assert "'aws'" in names and "'vultr'" in names
    assert accounts == "['aws'] None"
    assert imported == "[]"  # no SDK before a collector is built
    assert after == "True"  # AWS's SDK, once AWS collects


PLUGIN_SPEC = '''
from optiinfra_tui.providers import DefaultSchedule, Field, ProviderSpec

SPEC = ProviderSpec(
    name="nimbus", title="Nimbus", data_types=("cost", "usage"), default_types=("usage",),
    fields={"token_env": Field("the Nimbus token", env=True, secret=True, required=True,
                               standard="NIMBUS_TOKEN")},
    collector="nimbus_collector:NimbusCollector",
    schedules=(DefaultSchedule(("usage",), interval=3600),), detect=("NIMBUS_TOKEN",),
    colour="#ff00ff")
'''
PLUGIN_COLLECTOR = '''
class NimbusCollector:
    provider = "nimbus"
    data_types = ("cost", "usage")

    def __init__(self, settings, customer_id, account):
        self.customer_id, self.account = customer_id, account

    def collect(self, data_type, ctx):
        return iter(())

    def ping(self):
        return 0.0

    def close(self):
        pass
'''


@pytest.fixture
def nimbus(tmp_path) -> Path:
    """A provider from another distribution: its own module and entry point, nothing of ours
    changed."""
    site = tmp_path / "site"
    dist = site / "nimbus_provider-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: nimbus-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{providers.GROUP}]\nnimbus = nimbus_plugin:SPEC\n")
    (site / "nimbus_plugin.py").write_text(PLUGIN_SPEC)
    (site / "nimbus_collector.py").write_text(PLUGIN_COLLECTOR)
    return site


def test_a_provider_from_another_package_is_found_through_its_entry_point(tmp_path, nimbus):
    toml = ('[customers.acme.nimbus]\ntoken_env = "ACME_NIMBUS"\n'
            '[customers.acme]\nvultr_api_key_env = "ACME_VULTR"\n')
    env = base_env(tmp_path, toml, PYTHONPATH=str(nimbus), NIMBUS_TOKEN="nimbus-secret-1",
                   ACME_NIMBUS="nimbus-secret-2")
    code = (
        "import sys\n"
        "from optiinfra_tui import providers\n"
        "from optiinfra_tui.settings import load_settings\n"
        "s = load_settings()\n"
        "print(providers.names())\n"
        "print([(x.name, x.provider, x.data_types, x.interval) for x in s.schedules"
        " if x.provider == 'nimbus'])\n"
        "print(sorted(s.customer(s.default_customer_id).accounts), "
        "sorted(s.customer('acme').accounts))\n"
        "print(sorted(s.secrets()))\n"
        "print('nimbus_collector' in sys.modules)\n"
        "from optiinfra_tui.collectors import get_collector\n"
        "c = get_collector('nimbus', s, 'acme')\n"
        "print(type(c).__name__, c.account.values, 'nimbus_collector' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "('aws', 'azure', 'gcp', 'nimbus', 'vultr')"
    assert lines[1] == "[('nimbus-usage', 'nimbus', ('usage',), 3600)]"  # its default schedule
    assert lines[2] == "['nimbus', 'vultr'] ['nimbus', 'vultr']"
    assert lines[3] == "['nimbus-secret-1', 'nimbus-secret-2']"
    assert lines[4] == "False"  # listed and configured, not imported
    assert lines[5] == "NimbusCollector {'token_env': 'ACME_NIMBUS'} True"

    # The CLI's choices are the specs': the plug-in's provider and data types are accepted.
    r = subprocess.run(CLI + ["collect", "--help"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "{aws|azure|gcp|nimbus|vultr}" in r.stdout, r.stdout
    r = subprocess.run(CLI + ["collect", "nimbus", "--customer", "acme", "--types", "cost",
                              "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout[r.stdout.index("{"):])
    assert (doc["provider"], doc["customer_id"], doc["data_types"]) == ("nimbus", "acme",
                                                                       ["cost"])
    bad = subprocess.run(CLI + ["collect", "nimbus", "--types", "export"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Unknown data type 'export' for nimbus" in bad.stderr


def test_a_broken_plugin_is_a_config_error_naming_it(tmp_path, nimbus):
    (nimbus / "nimbus_plugin.py").write_text("raise RuntimeError('half installed')\n")
    r = subprocess.run(CLI + ["status"], env=base_env(tmp_path, PYTHONPATH=str(nimbus)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "provider plug-in 'nimbus'" in r.stderr and "half installed" in r.stderr
    assert "Traceback" not in r.stderr


# --- the CLI ----------------------------------------------------------------------------------


@pytest.mark.parametrize("args,message", [
    (["collect", "nimbus"], "Unknown provider 'nimbus'. Supported providers: aws, azure, gcp, vultr."),
    (["collect", "aws", "--types", "bills"], "Unknown data type 'bills'"),
    (["collect", "aws", "--types", "resource"], "Unknown data type 'resource' for aws. "
                                                "Choose from: cost, export."),
    (["history", "--provider", "nimbus"], "Unknown provider 'nimbus'"),
])
def test_the_cli_choices_come_from_the_specs(tmp_path, args, message):
    r = subprocess.run(CLI + args, env=base_env(tmp_path), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    help_text = subprocess.run(CLI + ["collect", "--help"], env=base_env(tmp_path),
                               capture_output=True, text=True, timeout=60).stdout
    assert "{aws|azure|gcp|vultr}" in help_text and "[cost,export,account,resource]" in help_text


# --- credentials per customer and provider ----------------------------------------------------


def test_customers_name_their_variables_per_provider_and_the_old_form_still_works(tmp_path):
    toml = '''schedules = []
[customers.acme.aws]
access_key_id_env = "ACME_AWS_ACCESS_KEY_ID"
secret_access_key_env = "ACME_AWS_SECRET_ACCESS_KEY"
role_arn = "arn:aws:iam::111122223333:role/optiinfra-read"
export_uri = "s3://bucket/prefix/export-name"

[customers.acme.vultr]
api_key_env = "ACME_VULTR_API_KEY"

[customers.legacy]
vultr_api_key_env = "LEGACY_VULTR_KEY"
'''
    s = settings_with(tmp_path, toml, ACME_AWS_ACCESS_KEY_ID="AKIAACME00000001",
                      ACME_AWS_SECRET_ACCESS_KEY="acme-aws-secret", ACME_VULTR_API_KEY="acme-v",
                      LEGACY_VULTR_KEY="legacy-v", VULTR_API_KEY="default-v")
    acme = s.customer("acme")
    assert acme.providers == ("aws", "vultr")
    assert dict(acme.accounts["aws"].values) == {
        "access_key_id_env": "ACME_AWS_ACCESS_KEY_ID",
        "secret_access_key_env": "ACME_AWS_SECRET_ACCESS_KEY",
        "role_arn": "arn:aws:iam::111122223333:role/optiinfra-read",
        "export_uri": "s3://bucket/prefix/export-name"}
    assert s.credential("acme", "vultr") == "acme-v"
    assert s.credential("legacy", "vultr") == "legacy-v"  # vultr_api_key_env, as before
    assert s.customer("legacy").providers == ("vultr",)
    assert [c.id for c in s.customers_with("aws")] == ["acme"]
    # Every secret the named variables hold is scrubbed; the ARN and the URI are no secrets.
    assert sorted(s.secrets()) == sorted(["AKIAACME00000001", "acme-aws-secret", "acme-v",
                                          "legacy-v", "default-v"])
    assert s.missing_credential("acme", "aws") is None
    s = settings_with(tmp_path, toml)
    assert s.missing_credential("acme", "aws") == "ACME_AWS_ACCESS_KEY_ID"
    assert s.missing_credential("acme", "vultr") == "ACME_VULTR_API_KEY"


@pytest.mark.parametrize("toml,env,message", [
    ('[customers.acme.aws]\nrole_arn = "admin"', {},
     "[customers.acme.aws]: aws role_arn 'admin' is not an IAM role ARN"),
    ('[customers.acme.aws]\naccess_key_id_env = "K"', {},
     "give both access_key_id_env and secret_access_key_env"),
    ('[customers.acme.aws]\naccess_key_id_env = "AKIAREALKEY"\nsecret_access_key_env = "a b"', {},
     "secret_access_key_env must name an environment variable"),
    ('[customers.acme.aws]\nexport_uri = "https://bucket/x"', {}, "is not an S3 URI"),
    ('[customers.acme.vultr]\n', {}, "[customers.acme.vultr] needs api_key_env"),
    ('[customers.acme]\naws = "K"', {}, "[customers.acme] aws must be a table"),
    ("", {"AWS_CE_MAX_REQUESTS": "0"}, "AWS_CE_MAX_REQUESTS='0'"),
    ("", {"AWS_EXPORT_URI": "bucket/x"}, "AWS_EXPORT_URI: aws export_uri 'bucket/x' is not an S3"),
    ("", {"VULTR_MAX_RPS": "fast"}, "VULTR_MAX_RPS='fast': not a number"),
    ("", {"VULTR_API_URL": "ftp://x"}, "VULTR_API_URL has scheme 'ftp'"),
    ('[[schedules]]\nprovider = "aws"\ndata_types = ["resource"]\ninterval = 60', {},
     "Unknown data type 'resource' for aws"),
])
def test_provider_settings_are_checked_at_start(tmp_path, toml, env, message):
    with pytest.raises(ConfigError) as err:
        settings_with(tmp_path, toml, **env)
    assert message in str(err.value)


def test_the_default_customer_has_aws_when_its_standard_environment_says_so(tmp_path):
    assert settings_with(tmp_path).customer("default_customer").providers == ("vultr",)
    for var, value in (("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"), ("AWS_PROFILE", "billing"),
                       ("AWS_EXPORT_URI", "s3://bucket/p/e"), ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")):
        s = settings_with(tmp_path, **{var: value})
        assert s.customer("default_customer").providers == ("aws", "vultr"), var
    s = settings_with(tmp_path, AWS_ACCESS_KEY_ID="AKIAEXAMPLE")
    assert s.missing_credential("default_customer", "aws") == "AWS_SECRET_ACCESS_KEY"
    s = settings_with(tmp_path, AWS_EXPORT_URI="s3://bucket/p/e", AWS_CE_MAX_REQUESTS="7")
    assert s.customer("default_customer").accounts["aws"].get("export_uri") == "s3://bucket/p/e"
    assert s.option("AWS_CE_MAX_REQUESTS") == 7
    # On an instance role alone nothing shows without a network call: an empty table says so.
    s = settings_with(tmp_path, "schedules = []\n[customers.default_customer.aws]\n")
    assert s.customer("default_customer").providers == ("aws", "vultr")
    assert s.missing_credential("default_customer", "aws") is None
    s = settings_with(tmp_path, AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="sec",
                      AWS_SESSION_TOKEN="tok")
    assert sorted(s.secrets()) == ["AKIAEXAMPLE", "sec", "tok"]


def test_gcp_takes_a_table_per_customer_and_the_default_customers_from_its_variables(tmp_path):
    toml = ('schedules = []\n[customers.acme.gcp]\nservice_account_file_env = "ACME_GCP_KEY"\n'
            'billing_table = "acme-proj.billing.gcp_billing_export_v1_X"\n')
    s = settings_with(tmp_path, toml)
    assert s.customer("acme").providers == ("gcp",)
    assert s.customer("default_customer").providers == ("vultr",)  # no GCP_BILLING_TABLE
    assert s.missing_credential("acme", "gcp") == "ACME_GCP_KEY"
    s = settings_with(tmp_path, toml, ACME_GCP_KEY="/keys/acme.json",
                      GCP_BILLING_TABLE="p.billing.t", BIGQUERY_API_URL="https://bq.example")
    assert s.missing_credential("acme", "gcp") is None
    assert s.customer("default_customer").providers == ("gcp", "vultr")
    assert s.missing_credential("default_customer", "gcp") == "GOOGLE_APPLICATION_CREDENTIALS"
    s = settings_with(tmp_path, toml, BIGQUERY_API_URL="http://127.0.0.1:9050")
    assert s.missing_credential("acme", "gcp") is None  # a local double takes no token
    for toml, env, message in (
            ('[customers.acme.gcp]\nbilling_table = "just-a-table"', {},
             "[customers.acme.gcp]: billing_table='just-a-table' is not project.dataset.table"),
            ('[customers.acme.gcp]\nservice_account_file_env = "K"', {},
             "[customers.acme.gcp] needs billing_table"),
            ("", {"GCP_BILLING_TABLE": "p.d.t", "GCP_JOB_PROJECT": "bad project"},
             "GCP_JOB_PROJECT='bad project' is not a project id"),
            ("", {"BIGQUERY_API_URL": "ftp://x"}, "BIGQUERY_API_URL has scheme 'ftp'")):
        with pytest.raises(ConfigError) as err:
            settings_with(tmp_path, toml, **env)
        assert message in str(err.value)


def test_default_schedules_come_from_the_specs(tmp_path):
    cfg = tmp_path / "none.toml"
    cfg.write_text("")
    env = {"OPTIINFRA_HOME": str(tmp_path), "OPTIINFRA_CONFIG": str(cfg),
           "COLLECTION_INTERVAL": "600"}
    # Each provider's own, for the providers some customer has: AWS's every 6 hours (Cost
    # Explorer bills each request), Vultr's every COLLECTION_INTERVAL.
    s = load_settings(dict(env, AWS_PROFILE="billing"))
    assert [(x.name, x.provider, x.data_types, x.interval) for x in s.schedules] == [
        ("aws-cost", "aws", ("cost",), 21600), ("vultr-cost", "vultr", ("cost",), 600)]
    assert [x.name for x in load_settings(env).schedules] == ["vultr-cost"]
    cfg.write_text('[customers.acme.aws]\nrole_arn = "arn:aws:iam::111122223333:role/r"\n')
    assert [x.name for x in load_settings(env).schedules] == ["aws-cost", "vultr-cost"]
    # A schedule naming no provider means the one files meant before providers were plug-ins.
    s = settings_with(tmp_path, '[[schedules]]\nname = "c"\ninterval = 60\n')
    assert s.schedules[0].provider == "vultr"


# --- a missing extra --------------------------------------------------------------------------


def test_collecting_from_a_provider_whose_extra_is_missing_names_the_install_command(
        tmp_path, chdb_url):
    env = base_env(tmp_path, AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AWS_SECRET_ACCESS_KEY="secret",
                   CLICKHOUSE_URL=f"chdb://{tmp_path / 'chdb'}")

    def run(*args):
        return subprocess.run([*cli_without("botocore", "boto3"), *args], env=env,
                              capture_output=True, text=True, timeout=180)

    listed = run("collect", "--help")  # the provider is still listed
    assert listed.returncode == 0 and "{aws|azure|gcp|vultr}" in listed.stdout, listed.stderr
    r = run("collect", "aws", "--inline", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout[r.stdout.index("{"):])
    assert doc["error_kind"] == "config"
    assert 'pip install "optiinfra-tui[aws]"' in doc["error_message"]
    assert "Traceback" not in r.stdout + r.stderr


# --- no module outside collectors/ names a provider -------------------------------------------


def test_no_module_outside_collectors_names_a_provider():
    names = set(providers.names()) | {"vultr", "aws", "azure", "gcp"}
    word = re.compile(rf"(?<![a-z])({'|'.join(sorted(names))})(?![a-z])", re.IGNORECASE)
    files = [p for p in (ROOT / "optiinfra_tui").rglob("*")
             if p.suffix in (".py", ".tcss") and "collectors" not in p.relative_to(ROOT).parts]
    files.append(ROOT / "huey_config.py")
    found = []
    for path in files:
        text = path.read_text()
        if path.suffix == ".tcss":
            found += [(path.name, m.group(0)) for m in word.finditer(text)]
            continue
        # Names, strings, docstrings and comments alike.
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NAME, tokenize.STRING, tokenize.COMMENT,
                            getattr(tokenize, "FSTRING_MIDDLE", -1)):
                for m in word.finditer(tok.string):
                    found.append((f"{path.relative_to(ROOT)}:{tok.start[0]}", m.group(0)))
    assert found == []


# --- (g) a plain consumer collects AWS through the entry point --------------------------------


def test_a_plain_huey_consumer_collects_aws_through_the_entry_point(tmp_path, aws):
    from datetime import UTC, datetime

    from aws_fixtures import by_day
    from aws_truth import ce_pages, seeded_truth
    from procs import Consumer, worker_env

    # The consumer's own clock decides its window: the truth lies in this month, which stays
    # inside the window (previous month to tomorrow) whenever the test runs.
    first = datetime.now(UTC).date().replace(day=1)
    truth = seeded_truth(first, 1)
    aws.inject_ce(ce_pages(truth, groups_per_page=5))  # three pages
    toml = ('schedules = []\n[customers.acme.aws]\naccess_key_id_env = "ACME_AWS_KEY_ID"\n'
            'secret_access_key_env = "ACME_AWS_SECRET"\n')
    (tmp_path / "c.toml").write_text(toml)
    home = tmp_path / "consumer"
    env = worker_env(os.environ, OPTIINFRA_CONFIG=tmp_path / "c.toml", OPTIINFRA_HOME=home,
                     ACME_AWS_KEY_ID=aws.key_id, ACME_AWS_SECRET=aws.secret,
                     **{k: v for k, v in aws.env.items() if not k.startswith("AWS_ACCESS")
                        and not k.startswith("AWS_SECRET")},
                     AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    env = {k: v for k, v in env.items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")}
    consumer = Consumer("huey", env, home).start()
    try:
        r = subprocess.run(CLI + ["collect", "aws", "--customer", "acme", "--wait", "--json",
                                  "--timeout", "180"], env=dict(env), capture_output=True,
                           text=True, timeout=240, cwd=tmp_path)
    finally:
        consumer.stop()
    printed = consumer.printed()
    assert r.returncode == 0, r.stdout + r.stderr + printed[-3000:]
    run = json.loads(r.stdout[r.stdout.index("{"):])
    assert (run["status"], run["provider"], run["customer_id"]) == ("success", "aws", "acme")
    assert run["rows"] == len(truth) and run["requests"] == 3
    assert str(os.getpid()) not in run["worker"]  # the consumer ran it, not this process
    costs = subprocess.run(CLI + ["costs", "--by", "day", "--json"], env=env,
                           capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert costs.returncode == 0, costs.stderr
    reported = {(t["key"], t["currency"]): t["total"] for t in json.loads(costs.stdout)}
    assert reported == {k: str(v) for k, v in by_day(truth).items()}
    assert aws.secret not in printed + consumer.logged()


# --- fan-out and health checks follow the specs -----------------------------------------------


def test_the_aws_fan_out_and_health_checks_follow_each_customers_credentials(make_env, aws,
                                                                             tmp_path):
    from optiinfra_tui.worker.collection import fan_out
    from optiinfra_tui.worker.health import check_all
    from optiinfra_tui.worker.runtime import Runtime

    cfg = tmp_path / "custs.toml"
    cfg.write_text('schedules = []\n'
                   '[customers.acme.aws]\naccess_key_id_env = "ACME_KEY"\n'
                   'secret_access_key_env = "ACME_SECRET"\n'
                   '[customers.bob.aws]\naccess_key_id_env = "BOB_KEY"\n'
                   'secret_access_key_env = "BOB_SECRET"\n'
                   '[customers.carol]\nvultr_api_key_env = "CAROL_VULTR"\n')
    rt = Runtime(load_settings(make_env(OPTIINFRA_CONFIG=str(cfg), ACME_KEY=aws.key_id,
                                        ACME_SECRET=aws.secret, **aws.env)))
    try:
        rt.history()
        default = rt.settings.default_customer_id
        out = fan_out(rt, "aws", ("cost",), trigger="schedule", schedule="aws-cost")
        assert sorted(r.customer_id for r in out.runs) == sorted([default, "acme"])
        assert out.no_credentials == [("bob", "BOB_KEY")]
        checks = {h.name: (h.ok, h.message) for h in check_all(rt, providers=True,
                                                                backends=False)}
    finally:
        rt.close()
    assert checks == {
        f"aws:{default}": (True, ""), "aws:acme": (True, ""),  # STS answered
        "aws:bob": (False, "no credentials: set BOB_KEY"),
        f"vultr:{default}": (False, "no credentials: set VULTR_API_KEY"),
        "vultr:carol": (False, "no credentials: set CAROL_VULTR")}
