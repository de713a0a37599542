"""`optiinfra-tui serve`: the dashboard in a browser, behind a sign-in, each session a watcher.

Real processes: the server (`serve`), a headless owner of the data dir collecting from the
local Vultr double, and Debian's headless Chromium typing `c` then `enter`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import browser
import httpx
import pytest
from procs import worker_env
from services import free_port, missing, wait_until

from optiinfra_tui.web.links import Signer

CLI = [sys.executable, "-m", "optiinfra_tui.cli"]
TOKEN = "web-token-for-the-tests-0123456"
SCREENSHOT = Path(__file__).resolve().parent.parent / "screenshots" / "browser.png"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_links_and_sessions_are_signed_for_one_purpose_and_expire():
    clock = Clock()
    signer = Signer(b"k" * 32, clock)
    link = signer.sign("link", 60)
    assert signer.valid("link", link)
    assert not signer.valid("session", link)  # a link is no session cookie
    assert not Signer(b"x" * 32, clock).valid("link", link)  # another server's key
    expires, mac = link.split(".")
    assert not signer.valid("link", f"{int(expires) + 3600}.{mac}")  # a later expiry, same mac
    assert not signer.valid("link", f"{expires}.{mac[:-1]}0")
    for junk in ("", None, "abc", ".", "1.", "é.é", "9" * 40 + ".00"):
        assert not signer.valid("link", junk)
    clock.now += 61
    assert not signer.valid("link", link)


@pytest.fixture
def env(tmp_path):
    (tmp_path / "c.toml").write_text("schedules = []\n")
    return worker_env(os.environ, OPTIINFRA_HOME=tmp_path / "home",
                      OPTIINFRA_CONFIG=tmp_path / "c.toml")


class Served:
    """`optiinfra-tui serve` on a free port, with the link it printed."""

    def __init__(self, env: dict, *args: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(CLI + ["serve", "--port", str(self.port), *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        said = "".join(self.proc.stdout.readline() for _ in range(3))
        found = re.search(r"Sign in: (\S+)", said)
        assert found, said + self.proc.stderr.read()
        self.link, self.printed = found.group(1), said
        assert wait_until(self._up, 30)

    def _up(self) -> bool:
        try:
            return httpx.get(self.base + "/login", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> str:
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=30)
        assert "Traceback" not in out + err, err
        return self.printed + out + err


@pytest.fixture
def served(env):
    servers = []

    def start(extra_env: dict | None = None, *args: str) -> Served:
        servers.append(Served(dict(env, **(extra_env or {})), *args))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


def test_nothing_but_the_sign_in_page_without_a_session(served):
    s = served({"OPTIINFRA_API_TOKEN": TOKEN})
    page = httpx.get(s.base + "/")
    assert page.status_code == 401 and 'type="password"' in page.text
    assert "OPTIINFRA_API_TOKEN" in page.text and "textual-terminal" not in page.text
    for path in ("/ws", "/download/abc", "/nope"):
        assert httpx.get(s.base + path).status_code == 401
    forged = {"optiinfra_session": "99999999999.00"}
    assert httpx.get(s.base + "/", cookies=forged).status_code == 401
    assert httpx.get(s.base + "/static/js/textual.js").status_code == 200  # the page's script


def test_a_token_typed_on_the_page_signs_in(served):
    s = served({"OPTIINFRA_API_TOKEN": TOKEN})
    with httpx.Client(base_url=s.base) as browser_:
        wrong = browser_.post("/login", data={"token": "not-the-token-at-all"})
        assert wrong.status_code == 401 and "not a token this server takes" in wrong.text
        assert TOKEN not in wrong.text
        empty = browser_.post("/login", data={})
        assert empty.status_code == 401 and "Enter a token." in empty.text
        other_site = browser_.post("/login", data={"token": TOKEN},
                                   headers={"Origin": "http://evil.example"})
        assert other_site.status_code == 403 and "optiinfra_session" not in other_site.cookies
        ok = browser_.post("/login", data={"token": TOKEN})
        assert ok.status_code == 303 and ok.headers["location"] == "/"
        cookie = ok.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        page = browser_.get("/")
        assert page.status_code == 200 and "textual-terminal" in page.text
        assert f"ws://127.0.0.1:{s.port}/ws" in page.text
        assert "fonts.googleapis.com" not in page.text  # nothing fetched from third parties
        # A WebSocket opened by another site's page is refused, signed in or not.
        ws = browser_.get("/ws", headers={"Origin": "http://evil.example"})
        assert ws.status_code == 403
    assert httpx.post(s.base + "/login", data={"token": "x" * 70000}).status_code == 413


def test_the_printed_link_signs_in_and_a_forged_one_does_not(served):
    s = served()  # no token: on loopback the link is the only way in
    assert "set OPTIINFRA_API_TOKEN to sign in with a token instead" in s.printed
    page = httpx.get(s.base + "/")
    assert page.status_code == 401 and 'type="password"' not in page.text
    assert "no token is set" in page.text
    with httpx.Client(base_url=s.base) as browser_:
        forged = s.link[:-1] + ("0" if s.link[-1] != "0" else "1")
        bad = browser_.get(forged)
        assert bad.status_code == 401 and "has expired or was not made by this server" in bad.text
        assert browser_.post("/login", data={"token": "anything-at-all-12345"}).status_code == 401
        ok = browser_.get(s.link)
        assert ok.status_code == 303
        assert browser_.get("/").status_code == 200


@pytest.mark.parametrize("args,extra,said", [
    (["--host", "0.0.0.0"], {}, "--host 0.0.0.0: the browser dashboard would be reachable from "
                                "other hosts, and no token is set. Export OPTIINFRA_API_TOKEN"),
    (["--host", "::"], {}, "no token is set"),
    ([], {"OPTIINFRA_API_TOKEN": "short"}, "OPTIINFRA_API_TOKEN is 5 characters long"),
    (["--port", "0"], {}, "Invalid value for '--port'"),
    (["--public-url", "ops.example"], {}, "--public-url 'ops.example': give the address"),
])
def test_serve_refuses_to_start_open(env, args, extra, said):
    r = subprocess.run(CLI + ["serve", *args], env=dict(env, **extra), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert said in r.stderr and "Traceback" not in r.stdout + r.stderr
    assert "Sign in" not in r.stdout


def test_a_taken_port_is_a_clear_error(env):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(CLI + ["serve", "--port", str(port)], env=env, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 2 and f"--port {port}: can't listen there" in r.stderr, r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_in_a_real_browser_c_then_enter_collects_and_the_run_succeeds(env, served, fake_vultr,
                                                                      tmp_path):
    why = browser.missing()
    if why:
        missing(why)
    env.update(VULTR_API_KEY=fake_vultr.token, VULTR_API_URL=fake_vultr.url)
    # The owner of the data dir runs the collections; the browser's dashboard only watches.
    owner = subprocess.Popen(CLI + ["--headless", "--workers", "1"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s = served(env)
    driver = browser.start()
    try:
        driver.get(s.link)
        # The session is a watcher: the header names the owner, which runs the collections.
        assert wait_until(lambda: any(f"watching: workers in pid {owner.pid}" in line
                                      for line in browser.screen(driver)), 60, 0.25), \
            "\n".join(browser.screen(driver)) + browser.console(driver)
        browser.type_keys(driver, "c")
        assert wait_until(lambda: any("Start" in line for line in browser.screen(driver)),
                          30, 0.25), "\n".join(browser.screen(driver))
        browser.type_keys(driver, "\ue007")  # enter
        row = re.compile(r"│\s+1\s+success\s+vultr\s+\S+\s+cost\s+manual\s")
        seen = wait_until(lambda: next((line for line in browser.screen(driver)
                                        if row.search(line)), None), 120, 0.25)
        assert seen, "\n".join(browser.screen(driver))
        assert f" {fake_vultr.line_count()} " in seen  # its rows, as the browser shows them
        wait_until(lambda: any("Run 1 queued" in line for line in browser.screen(driver)), 10)
        driver.save_screenshot(str(tmp_path / "browser.png"))
        if os.environ.get("OPTIINFRA_SCREENSHOTS") == "1":  # screenshots/make_screenshots.py
            driver.save_screenshot(str(SCREENSHOT))
    finally:
        driver.quit()
        owner.terminate()
        owner.wait(60)
    assert (tmp_path / "browser.png").stat().st_size > 10_000
    hist = subprocess.run(CLI + ["history", "--json"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert '"status": "success"' in hist.stdout and '"trigger": "manual"' in hist.stdout
    assert fake_vultr.token not in Path(env["OPTIINFRA_HOME"], "optiinfra.log").read_text()
    printed = s.stop()
    assert fake_vultr.token not in printed
