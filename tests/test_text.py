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


def test_a_key_per_customer_is_masked_in_one_pass_as_a_few_keys_are():
    # 10,000 customers' keys: the many-secrets path must mask exactly what the plain one does.
    import random

    rng = random.Random(7)
    keys = tuple(f"key-{rng.getrandbits(64):016x}" for _ in range(10_000))
    few = keys[:3]
    for _ in range(200):
        picked = [rng.choice(keys) for _ in range(rng.randint(0, 3))]
        text = " ".join(["start", *picked, "k", "key-", "end"][: rng.randint(1, 8)])
        many = scrub(text, keys)
        assert not any(k in many for k in keys)
        assert many == scrub(text, tuple(k for k in keys if k in text) or few)
    # Back to back, at the ends, and repeated.
    a, b = keys[0], keys[1]
    assert scrub(f"{a}{b}", keys) == "******"
    assert scrub(f"{a} and {a}", keys) == "*** and ***"
    assert scrub("no secret here", keys) == "no secret here"


def test_a_longer_secret_sharing_a_shorter_ones_start_is_masked_whole():
    short, long = "abcd1234", "abcd12345678"
    secrets = (short, long, *(f"other-{i:04d}" for i in range(100)))
    assert scrub(f"x {long} y {short} z", secrets) == "x *** y *** z"
    assert "5678" not in scrub(long, secrets)
