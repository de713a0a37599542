"""One scrubber, one first-line helper, one safe URL: the same answer wherever a message is made."""

from __future__ import annotations

from optiinfra_tui.collectors.http import ApiClient
from optiinfra_tui.storage.clickhouse import _scrub
from optiinfra_tui.text import first_line, safe_url, scrub, short_error
from optiinfra_tui.worker.health import _timed

SECRET = "s3cr3t-password-value"


def test_a_secret_at_the_cut_is_masked_whole_not_shown_in_part():
    # A message cut to its first 300 characters before scrubbing would keep the secret's start.
    text = "x" * 290 + SECRET + " tail"
    assert "s3cr3t" not in _scrub(text, (SECRET,))
    assert "s3cr3t" not in short_error(RuntimeError(text), 300, [SECRET])


def test_a_health_check_failure_never_shows_part_of_a_secret():
    def fails():
        raise RuntimeError("y" * 280 + SECRET)

    health = _timed("metrics", fails, [SECRET])
    assert not health.ok and "s3cr3t" not in health.message


def test_the_http_client_scrubs_as_the_logs_do():
    client = ApiClient("https://api.example.test/v2", SECRET, None, service="Example")
    try:
        assert client.scrub(f"bad key {SECRET}!") == scrub(f"bad key {SECRET}!", [SECRET])
        assert SECRET not in client.scrub(f"bad key {SECRET}!")
    finally:
        client.close()


def test_first_line_and_short_error():
    assert first_line("\n  one\ntwo") == "one"
    assert first_line("a" * 500, 10) == "a" * 10
    assert short_error(ValueError("")) == "ValueError"
    assert short_error(ValueError("bad\nmore")) == "ValueError: bad"


def test_safe_url_drops_user_password_query_and_fragment():
    assert safe_url("postgresql://u:pw@db.example:5433/hist?sslpassword=x#f") == \
        "postgresql://db.example:5433/hist"
    assert safe_url("sqlite:////tmp/h/history.db") == "sqlite:////tmp/h/history.db"
    assert "pw" not in safe_url("redis://:pw@host:notaport/0")
