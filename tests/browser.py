"""Debian's headless Chromium, driven through its chromedriver (selenium), reading back the
terminal a textual-serve page shows.

The page draws the terminal on a canvas, so its text is not in the DOM: a script added before
the page loads keeps every byte the page's WebSocket receives and every size it sends, and
pyte (a VT emulator) replays those bytes into the screen the browser shows.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("OPTIINFRA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("OPTIINFRA_CHROMEDRIVER", "/usr/bin/chromedriver")

# Kept by the page: window.__frames (base64 of each binary frame, in order) and
# window.__size (the terminal's last [columns, rows]).
RECORD = """
window.__frames = []; window.__size = null;
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  try { const m = JSON.parse(data); if (m[0] === "resize") window.__size = [m[1].width, m[1].height]; }
  catch (e) {}
  return send.call(this, data);
};
const listen = WebSocket.prototype.addEventListener;
WebSocket.prototype.addEventListener = function (type, fn, opts) {
  if (type === "message") {
    listen.call(this, type, function (e) {
      if (typeof e.data !== "string") {
        const bytes = new Uint8Array(e.data); let s = "";
        for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
        window.__frames.push(btoa(s));
      }
    }, opts);
  }
  return listen.call(this, type, fn, opts);
};
"""


def missing() -> str | None:
    """Why no browser can run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


def start(width: int = 1400, height: int = 900):
    """A headless Chromium that records its pages' terminals."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1",
                "--disable-extensions", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD})
    return driver


def screen(driver) -> list[str]:
    """The lines of the terminal the page shows now, replayed from what it received."""
    import pyte

    frames = driver.execute_script("return window.__frames || []")
    size = driver.execute_script("return window.__size")
    if not size:
        return []
    term = pyte.Screen(*size)
    stream = pyte.ByteStream(term)
    for frame in frames:
        stream.feed(base64.b64decode(frame))
    return list(term.display)


def type_keys(driver, *keys: str) -> None:
    """Keys typed into the terminal, as a person would (the page's hidden textarea)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    terminal = driver.find_element(By.CSS_SELECTOR, ".xterm-helper-textarea")
    terminal.click() if terminal.is_displayed() else driver.execute_script(
        "arguments[0].focus()", terminal)
    for key in keys:
        ActionChains(driver).send_keys(key).perform()


def console(driver) -> str:
    """The page's console messages (for a failing test's report)."""
    try:
        return json.dumps(driver.get_log("browser"))[:4000]
    except Exception:
        return ""
