"""A customer id, provider or data type is validated wherever it comes from: the dashboard's
keys (actions.collect), the CLI and the TOML file; a bad one is a clear error that records
nothing. (The settings' own variables are covered in test_settings.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from services import config_env

from optiinfra_tui.errors import ConfigError
from optiinfra_tui.settings import load_settings
from optiinfra_tui.storage.history import CollectionRun
from optiinfra_tui.worker import actions
from optiinfra_tui.worker.runtime import Runtime

BAD_FROM_THE_KEYBOARD = [
    (dict(provider="nimbus"), "Unknown provider"),
    (dict(provider="VULTR"), "Unknown provider"),
    (dict(provider=""), "Unknown provider"),
    (dict(provider="vultr", customer_id="ghost"), "Unknown customer 'ghost'"),
    (dict(provider="vultr", customer_id="no/such"), "is not valid"),
    (dict(provider="vultr", customer_id="a" * 65), "is not valid"),
    (dict(provider="vultr", customer_id="ácme"), "is not valid"),
    (dict(provider="vultr", customer_id=" acme"), "is not valid"),
    (dict(provider="vultr", customer_id=42), "is not valid"),
    (dict(provider="vultr", data_types="cost,gpu"), "Unknown data type 'gpu'"),
    (dict(provider="vultr", data_types=["cost", "Cost"]), "Unknown data type 'Cost'"),
    (dict(provider="vultr", data_types=[None]), "Unknown data type None"),
]


@pytest.mark.parametrize("kwargs,message", BAD_FROM_THE_KEYBOARD)
def test_keyboard_collect_validates_and_records_nothing(make_env, kwargs, message):
    rt = Runtime(load_settings(make_env()))
    rt.history()
    with pytest.raises(ConfigError, match=message):
        actions.collect(rt, **kwargs)
    assert CollectionRun.select().count() == 0
    assert rt.huey.pending_count() == 0


def test_keyboard_collect_takes_good_input(make_env, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[customers."acme-eu.1"]\nvultr_api_key_env = "ACME_KEY"\n')
    rt = Runtime(load_settings(make_env(OPTIINFRA_CONFIG=str(cfg))))
    rt.history()
    run = actions.collect(rt, "vultr", "acme-eu.1", ["resource", "cost", "resource"])
    assert (run.customer_id, run.types, run.status) == ("acme-eu.1", ("cost", "resource"), "queued")


def cli(args: list[str], home, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPTIINFRA_", "REDIS_"))}
    return subprocess.run([sys.executable, "-m", "optiinfra_tui.cli", *args],
                          env=dict(base, OPTIINFRA_HOME=str(home), **env),
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,message", [
    (["collect", "vultr", "--customer", "ghost"], "Unknown customer 'ghost'"),
    (["collect", "vultr", "--customer", "x" * 70], "is not valid"),
    (["collect", "vultr", "--customer", "ácme", "--inline"], "is not valid"),
    (["collect", "Vultr"], "Unknown provider"),
    (["collect", "vultr", "--types", "cost;resource"], "Unknown data type"),
    (["history", "--status", "lost"], "Invalid value"),
])
def test_cli_rejects_bad_ids_with_exit_2_and_records_nothing(tmp_path, args, message):
    r = cli(args, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert cli(["history", "--json"], tmp_path).stdout.strip() in ("[]", "")


@pytest.mark.parametrize("body,message", [
    ('[[schedules]]\ninterval = 60\ndata_types = 5', "must be a list"),
    ('[[schedules]]\ninterval = 60\ndata_types = true', "must be a list"),
    ('[[schedules]]\ninterval = 60\ndata_types = "cost"', None),  # a string is one type
    ('[[schedules]]\ninterval = 60\nprovider = 5', "not supported"),
    ('[[schedules]]\ninterval = true', "whole number of seconds"),
    ('[[schedules]]\ninterval = 0', "whole number of seconds"),
    ('[[schedules]]\ncron = 5', "5 fields"),
    ('[[schedules]]\nname = "a b"\ninterval = 60', "unique identifier"),
    ('[[schedules]]\nname = "x"\ninterval = 60\n[[schedules]]\nname = "x"\ninterval = 60',
     "unique identifier"),
    ('[customers."ácme"]\nvultr_api_key_env = "K"', "is not valid"),
    ('[customers.acme]\nvultr_api_key_env = 5', "must name an environment variable"),
    ('[customers.acme]\nnimbus_api_key_env = "K"', "not a supported provider"),
    ('[customers.acme]\ngcp_api_key_env = "K"', "gcp takes no API key variable"),
    ('[customers.acme]\naws_api_key_env = "K"', "aws takes no API key variable"),
    ("customers = 5", "must be a table"),
    ("schedules = 5", "array of tables"),
    ("[[schedules]]\ninterval = 60\n[[schedules]", "not valid TOML"),
    ("\x00\x01binary", "not valid TOML"),
])
def test_toml_values_are_validated(tmp_path, body, message):
    env = config_env(tmp_path, body)
    if message is None:
        assert load_settings(env).schedules[0].data_types == ("cost",)
        return
    with pytest.raises(ConfigError, match=message):
        load_settings(env)


def test_a_corrupt_toml_file_is_exit_2_with_the_fix_not_a_traceback(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'[[schedules]]\ninterval = 60\ndata_types = 5\n')
    r = cli(["status"], tmp_path, OPTIINFRA_CONFIG=str(cfg))
    assert r.returncode == 2 and "must be a list" in r.stderr and "Traceback" not in r.stderr
    cfg.write_bytes(b"\xff\xfe[schedules")
    r = cli(["collect", "vultr"], tmp_path, OPTIINFRA_CONFIG=str(cfg))
    assert r.returncode == 2 and "UTF-8" in r.stderr and "Traceback" not in r.stderr
