#!/usr/bin/env python3
"""Drives a headless Chromium over the DevTools protocol for tests.

Reads one JSON command per line on stdin and answers each with one JSON line
on stdout, so a test in any language can load a page, wait for its script,
read its DOM, resize it and take screenshots, and learn of every console
error, uncaught exception and failed load the page caused.

Commands:
  {"cmd": "open", "url": U}                      load U, wait for its load event
  {"cmd": "eval", "expr": JS}                    -> {"value": result}
  {"cmd": "wait", "expr": JS, "timeout": S}      poll JS until truthy -> {"value": last, "met": bool}
  {"cmd": "viewport", "width": W, "height": H, "mobile": bool}
  {"cmd": "screenshot", "path": P}               the whole page as PNG
  {"cmd": "errors"}                              -> {"value": [every error seen so far]}
  {"cmd": "quit"}

Needs Chromium (`--chromium`, default /usr/bin/chromium) and the PyPI
package websocket-client; scripts/install-deps.sh installs both.
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0",
    "--window-size=1280,900",
]


class Browser:
    def __init__(self, chromium, log_path):
        self.profile = tempfile.mkdtemp(prefix="cdp-driver-")
        self.log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        args = [chromium, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        port = self._devtools_port()
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], suppress_origin=True, timeout=60)
        self.next_id = 0
        self.errors = []
        self.events = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _devtools_port(self):
        path = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}")
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first:
                    return int(first)
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        raise RuntimeError("chromium did not open its DevTools port within 60 s")

    def call(self, method, params=None):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params or {}}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg):
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            text = d.get("exception", {}).get("description") or d.get("text", "exception")
            self.errors.append(f"uncaught: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.errors.append(f"console.{params['type']}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            e = params["entry"]
            self.errors.append(f"{e.get('source')}: {e.get('text')} {e.get('url', '')}".strip())
        elif method:
            self.events.append(method)

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluating {expr!r}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get("result", {}).get("value")

    def open(self, url):
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        deadline = time.time() + 30
        while "Page.loadEventFired" not in self.events:
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not load within 30 s")
            self._event(json.loads(self.ws.recv()))

    def wait(self, expr, timeout):
        deadline = time.time() + timeout
        while True:
            value = self.evaluate(expr)
            if value or time.time() > deadline:
                return {"value": value, "met": bool(value)}
            time.sleep(0.2)

    def viewport(self, width, height, mobile):
        params = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
        self.call("Emulation.setDeviceMetricsOverride", params)

    def screenshot(self, path):
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip})
        with open(path, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


def serve(browser):
    for line in sys.stdin:
        if not line.strip():
            continue
        c = json.loads(line)
        reply = {"ok": True}
        try:
            cmd = c["cmd"]
            if cmd == "open":
                browser.open(c["url"])
            elif cmd == "eval":
                reply["value"] = browser.evaluate(c["expr"])
            elif cmd == "wait":
                reply.update(browser.wait(c["expr"], c.get("timeout", 30)))
            elif cmd == "viewport":
                browser.viewport(c["width"], c["height"], c.get("mobile", False))
            elif cmd == "screenshot":
                browser.screenshot(c["path"])
            elif cmd == "errors":
                browser.evaluate("0")  # drain the events queued so far
                reply["value"] = list(browser.errors)
            elif cmd == "quit":
                print(json.dumps(reply), flush=True)
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # reported to the test, which decides
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--log", help="where chromium's own output goes")
    args = ap.parse_args()
    browser = Browser(args.chromium, args.log)
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    try:
        serve(browser)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
