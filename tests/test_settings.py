"""Settings: embedded defaults, validation messages, the TOML file."""

import subprocess
import sys

import pytest
from services import config_env

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import load_settings, validate_data_types


def test_defaults_are_embedded(tmp_path):
    s = load_settings({"OPTIINFRA_HOME": str(tmp_path)})
    assert s.mode == "embedded"
    assert s.redis_url is None
    assert s.database_url == f"sqlite:///{tmp_path.resolve()}/history.db"
    assert s.clickhouse_url == f"chdb://{tmp_path.resolve()}/clickhouse"
    assert s.option("VULTR_API_URL") == "https://api.vultr.com/v2"
    assert (s.collection_interval, s.workers, s.max_retries, s.retry_delay) == (900, 2, 3, 60.0)
    assert s.task_time_limit == 1800
    assert [c.id for c in s.customers] == ["default_customer"]
    assert [(x.name, x.interval, x.data_types) for x in s.schedules] == [("vultr-cost", 900, ("cost",))]


def test_redis_host_builds_a_url_and_redis_url_wins(tmp_path):
    env = {"OPTIINFRA_HOME": str(tmp_path), "REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_DB": "2"}
    assert load_settings(env).redis_url == "redis://cache:6380/2"
    env["REDIS_URL"] = "redis://other:6379/0"
    s = load_settings(env)
    assert s.redis_url == "redis://other:6379/0"
    assert s.mode == "distributed"


@pytest.mark.parametrize("var,value,expect", [
    ("COLLECTION_INTERVAL", "soon", "COLLECTION_INTERVAL='soon': not a whole number"),
    ("COLLECTION_INTERVAL", "0", "out of range"),
    ("OPTIINFRA_WORKERS", "-1", "OPTIINFRA_WORKERS"),
    ("MAX_RETRIES", "x", "MAX_RETRIES"),
    ("RETRY_DELAY", "nan", "RETRY_DELAY"),
    ("REDIS_PORT", "99999", "REDIS_PORT"),
    ("DEFAULT_CUSTOMER_ID", "bad id!", "DEFAULT_CUSTOMER_ID"),
])
def test_invalid_values_name_the_variable_and_the_fix(tmp_path, var, value, expect):
    env = {"OPTIINFRA_HOME": str(tmp_path), "REDIS_HOST": "h", var: value}
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert expect in str(err.value)


def test_a_bad_url_never_echoes_its_password(tmp_path):
    env = {"OPTIINFRA_HOME": str(tmp_path), "DATABASE_URL": "mysql://admin:hunter22@db/x"}
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert "DATABASE_URL" in str(err.value)
    assert "hunter22" not in str(err.value)


def test_missing_key_names_the_variable(tmp_path):
    s = load_settings({"OPTIINFRA_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="VULTR_API_KEY is not set"):
        s.credential("default_customer", "vultr")
    s = load_settings({"OPTIINFRA_HOME": str(tmp_path), "VULTR_API_KEY": "k-123456"})
    assert s.credential("default_customer", "vultr") == "k-123456"
    assert s.secrets() == ("k-123456",)


def test_toml_customers_and_schedules(tmp_path):
    env = config_env(tmp_path, '''
[customers.acme]
vultr_api_key_env = "ACME_VULTR_KEY"

[[schedules]]
name = "nightly-resources"
provider = "vultr"
data_types = ["resource", "account"]
cron = "0 2 * * *"

[[schedules]]
name = "cost"
data_types = ["cost"]
interval = 600
''')
    s = load_settings(dict(env, ACME_VULTR_KEY="acme-secret"))
    assert [c.id for c in s.customers] == ["default_customer", "acme"]
    assert s.credential("acme", "vultr") == "acme-secret"
    assert [(x.name, x.cron, x.interval) for x in s.schedules] == [
        ("nightly-resources", "0 2 * * *", None), ("cost", None, 600)]
    assert s.schedules[0].data_types == ("account", "resource")  # the canonical order


@pytest.mark.parametrize("body,expect", [
    ("customers = [", "not valid TOML"),
    ('[customers.acme]\nvultr_api_key = "literal-secret"', "not a known key"),
    ('[customers.acme]\nvultr_api_key_env = "not a var name"', "must name an environment variable"),
    ('[customers."bad id"]\nvultr_api_key_env = "X"', "not valid"),
    ('[[schedules]]\ncron = "61 * * * *"', "not valid"),
    ('[[schedules]]\ncron = "* *"', "5 fields"),
    ('[[schedules]]\ninterval = 60\ncron = "* * * * *"', "exactly one"),
    ('[[schedules]]\ninterval = 60\ndata_types = ["gpu"]', "Unknown data type"),
    ('[[schedules]]\ninterval = 60\nprovider = "nimbus"', "not supported"),
    ("api = 8005", "api must be a table ([api])"),
    ("[api]\nport = 0", "[api] port must be a whole number between 1 and 65535"),
    ('[api]\nport = "8005"', "[api] port must be a whole number between 1 and 65535"),
    ("[api]\ntriggers_per_minute = 0", "[api] triggers_per_minute must be a whole number"),
    ("[api]\nwait_timeout = true", "[api] wait_timeout must be a whole number"),
    ('[api]\nhost = ""', "[api] host must be an address"),
    ('[api]\ntokens_env = "TEAM_TOKEN"', "[api] tokens_env must be a list of names of environment"),
    ('[api]\ntokens_env = ["not a name"]', "never the tokens themselves"),
])
def test_toml_errors_are_clear(tmp_path, body, expect):
    with pytest.raises(ConfigError) as err:
        load_settings(config_env(tmp_path, body))
    assert expect in str(err.value)


def test_unreadable_or_missing_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings({"OPTIINFRA_HOME": str(tmp_path), "OPTIINFRA_CONFIG": str(tmp_path / "nope.toml")})
    with pytest.raises(ConfigError, match="directory"):
        load_settings({"OPTIINFRA_HOME": str(tmp_path), "OPTIINFRA_CONFIG": str(tmp_path)})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_settings({"OPTIINFRA_HOME": str(tmp_path), "OPTIINFRA_CONFIG": str(binary)})


def test_data_types_validation():
    assert validate_data_types("vultr", None) == ("cost",)
    assert validate_data_types("vultr", "cost, resource,cost") == ("cost", "resource")
    with pytest.raises(ConfigError, match="Choose from: cost, account, resource"):
        validate_data_types("vultr", "bills")
    with pytest.raises(ConfigError, match="Unknown provider"):
        validate_data_types("aws2", None)


def test_cli_stops_on_bad_config_with_exit_2_and_no_traceback(tmp_path):
    env = {"OPTIINFRA_HOME": str(tmp_path), "COLLECTION_INTERVAL": "soon", "PATH": "/usr/bin:/bin"}
    for args in (["status"], ["collect", "vultr"], ["--headless"], ["history"]):
        r = subprocess.run([sys.executable, "-m", "optiinfra_tui.cli", *args], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "COLLECTION_INTERVAL" in r.stderr
        assert "Traceback" not in r.stderr + r.stdout


@pytest.mark.parametrize("body,where,hint", [
    ('[customer.acme]\nvultr_api_key_env = "K"', "customer is not a known key",
     "Did you mean customers?"),
    ("workers = 4\nschedules = []", "workers is not a known key", "set OPTIINFRA_WORKERS"),
    ('schedules = []\nredis_url = "redis://h"', "redis_url is not a known key", "set REDIS_URL"),
    ("[[schedule]]\ninterval = 60", "schedule is not a known key", "Did you mean schedules?"),
    ("[[schedules]]\ninterval = 60\n[[schedules]]\nintervall = 60",
     "schedules[1].intervall is not a known key", "Did you mean interval?"),
    ('[[schedules]]\ninterval = 60\ndata_type = ["cost"]',
     "schedules[0].data_type is not a known key", "Did you mean data_types?"),
    ('[customers.acme]\nvultr_api_key_env = "K"\nfoo = 1', "customers.acme.foo is not a known key",
     "Keys allowed in [customers.acme]: aws, azure, gcp, vultr_api_key_env, vultr."),
    ('[customers.acme]\nnimbus_api_key_env = "K"',
     "customers.acme.nimbus_api_key_env is not a known key", "'nimbus' is not a supported provider"),
    ('[customers.acme]\nazure_api_key_env = "K"', "customers.acme.azure_api_key_env is not a known key",
     "azure takes no API key variable"),
    ('[customers.acme]\ngcp_api_key_env = "K"', "customers.acme.gcp_api_key_env is not a known key",
     "gcp takes no API key variable"),
    ('[customers.acme]\naws_api_key_env = "K"', "customers.acme.aws_api_key_env is not a known key",
     "aws takes no API key variable"),
    ('[customers.acme.vultr]\napi_key = "K"', "customers.acme.vultr.api_key is not a known key",
     "Did you mean api_key_env?"),
    ('[customers.acme.aws]\nsecret_access_key = "K"',
     "customers.acme.aws.secret_access_key is not a known key",
     "Did you mean secret_access_key_env?"),
    ("[api]\nprot = 8005", "api.prot is not a known key", "Did you mean port?"),
    ('[api]\ntoken = "s3cret-s3cret-s3cret"', "api.token is not a known key",
     "A token never goes in this file: set OPTIINFRA_API_TOKEN, or name the variables"),
])
def test_every_unknown_key_is_named_with_its_place_and_the_closest_key(tmp_path, body, where, hint):
    env = config_env(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert f"{env['OPTIINFRA_CONFIG']}: {where}." in str(err.value)
    assert hint in str(err.value)


def test_unknown_keys_are_found_before_the_values_are_judged(tmp_path):
    # Without its key check, this schedule would be reported as lacking an interval.
    with pytest.raises(ConfigError, match=r"schedules\[0\]\.intervall is not a known key"):
        load_settings(config_env(tmp_path, "[[schedules]]\nintervall = 60\n"))


@pytest.mark.parametrize("body,message", [
    ('[customer.acme]\nvultr_api_key_env = "ACME_KEY"', "customer is not a known key. Did you mean customers?"),
    ("schedules = []\nworkers = 4", "workers is not a known key"),
    ("[[schedules]]\nintervall = 60", "schedules[0].intervall is not a known key. Did you mean interval?"),
])
def test_every_command_stops_on_an_unknown_key_with_exit_2(tmp_path, body, message):
    home = tmp_path / "home"
    env = dict(config_env(tmp_path, body), OPTIINFRA_HOME=str(home), PATH="/usr/bin:/bin")
    cfg = env["OPTIINFRA_CONFIG"]
    for args in ([], ["--headless"], ["collect", "vultr"], ["collect", "vultr", "--inline"],
                 ["status"], ["history"], ["costs"]):
        r = subprocess.run([sys.executable, "-m", "optiinfra_tui.cli", *args], env=env,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert f"configuration error: {cfg}: {message}" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout
    assert not (home / "history.db").exists()  # stopped before anything started


def test_the_queue_is_described_by_address_and_variable_never_by_password(tmp_path):
    base = {"OPTIINFRA_HOME": str(tmp_path)}
    where, fix = load_settings(dict(base, REDIS_URL="redis://u:pw-9876@cache:6380/1")).queue_location()
    assert (where, fix) == ("Redis at cache:6380, from REDIS_URL",
                            "Check that Redis is running there, or point REDIS_URL at one that is.")
    where, _ = load_settings(dict(base, REDIS_HOST="cache")).queue_location()
    assert where == "Redis at cache:6379, from REDIS_HOST/REDIS_PORT"
    where, fix = load_settings(base).queue_location()
    assert where == f"the SQLite queue at {tmp_path.resolve() / 'queue.db'}" and "writable" in fix


def test_the_api_section_and_its_tokens_are_secrets(tmp_path):
    env = config_env(tmp_path, '[api]\nport = 8005\nhost = "0.0.0.0"\ntokens_env = ["TEAM_B"]\n'
                               "triggers_per_minute = 10\nwait_timeout = 30\n")
    s = load_settings(dict(env, OPTIINFRA_API_TOKEN="token-one-0123456789", TEAM_B="token-two-987654321"))
    assert (s.api.port, s.api.host, s.api.tokens_env, s.api.triggers_per_minute,
            s.api.wait_timeout) == (8005, "0.0.0.0", ("TEAM_B",), 10, 30)
    assert s.api.token_vars == ("OPTIINFRA_API_TOKEN", "TEAM_B")
    assert {"token-one-0123456789", "token-two-987654321"} <= set(s.secrets())
    default = load_settings(config_env(tmp_path, "schedules = []\n")).api
    assert (default.port, default.host, default.triggers_per_minute) == (None, "127.0.0.1", 60)
