"""A small driver of headless Chromium over the DevTools protocol (CDP), for
the web console's browser tests.

Browser     Debian's chromium, headless, on a fresh profile in a temporary
            folder; the DevTools port read from DevToolsActivePort; one
            WebSocket to the page target (Debian's python3-websocket).
            Commands carry ids; events that come meanwhile are kept:
            every Network.requestWillBeSent URL (requests) and every
            Network.responseReceived (responses: url, status).
            navigate(), evaluate(), wait_for(), fill(), click(),
            screenshot(); close() stops Chromium and what it forked, by
            PID, and removes the profile.
missing()   why the browser tests cannot run here (None: they can).

The tests run under a Python that is not Debian's (tests/e2e/run.py
re-executes the one on PATH), so websocket-client, pure Python, is
loaded from Debian's package folder when that Python has the same
version as /usr/bin/python3. Every wait is bounded.
"""

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

from . import util

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DEBIAN_PY = "/usr/bin/python3"
START_WAIT = 20.0
CMD_WAIT = 15.0


def _load_websocket():
    """The websocket module, or the reason it cannot be had."""
    try:
        import websocket
        return websocket, None
    except ImportError:
        pass
    try:
        out = subprocess.run(
            [DEBIAN_PY, "-c", "import sys, websocket; print(websocket.__file__); "
             "print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "no Debian python to find python3-websocket: %s" % e
    if out.returncode != 0:
        return None, "python3-websocket is not installed (scripts/install-deps.sh)"
    path, version = out.stdout.split()
    if version != "%d.%d" % sys.version_info[:2]:
        return None, "python3-websocket is for Python %s, the tests run on %d.%d" % (
            version, *sys.version_info[:2])
    spec = importlib.util.spec_from_file_location(
        "websocket", path, submodule_search_locations=[os.path.dirname(path)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["websocket"] = mod
    spec.loader.exec_module(mod)
    return mod, None


websocket, _WS_WHY = _load_websocket()


def missing():
    if not os.access(CHROMIUM, os.X_OK):
        return "chromium is not installed (scripts/install-deps.sh)"
    return _WS_WHY


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, width=1280, height=900):
        self.profile = util.tempdir("volley-chromium-")
        self.proc = util.start(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
             "--remote-debugging-port=0", "--user-data-dir=" + self.profile,
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--disable-dev-shm-usage", "--mute-audio",
             "--window-size=%d,%d" % (width, height), "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ws = None
        self.next_id = 0
        self.requests = []        # every URL the page asked for
        self.responses = []       # (url, status) of every response
        self.console = []         # the page's exceptions and console errors
        try:
            self._connect()
            for domain in ("Page", "Runtime", "Network"):
                self.send(domain + ".enable")
        except BaseException:
            self.close()
            raise

    def _connect(self):
        port_file = os.path.join(self.profile, "DevToolsActivePort")

        def port():
            try:
                with open(port_file) as f:
                    return int(f.readline())
            except (OSError, ValueError):
                return None

        p = util.wait_until(port, START_WAIT, 0.05, proc=self.proc)
        if not p:
            raise CDPError("chromium wrote no DevToolsActivePort in %.0f s (rc %s)"
                           % (START_WAIT, self.proc.poll()))
        with urllib.request.urlopen("http://127.0.0.1:%d/json/list" % p, timeout=5) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        if not pages:
            raise CDPError("chromium has no page target")
        # no Origin header: Chromium refuses DevTools sockets from origins
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"],
                                              timeout=CMD_WAIT, suppress_origin=True)

    # -- the protocol --------------------------------------------------
    def _event(self, msg):
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Network.requestWillBeSent":
            self.requests.append(p["request"]["url"])
        elif m == "Network.responseReceived":
            self.responses.append((p["response"]["url"], p["response"]["status"]))
        elif m == "Runtime.exceptionThrown":
            self.console.append(p["exceptionDetails"].get("text", "exception"))

    def _recv(self, deadline):
        self.ws.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            return json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None

    def send(self, method, params=None, timeout=CMD_WAIT):
        """One command; its result (CDPError on an error answer or past timeout)."""
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params or {}}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg is None:
                break
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CDPError("%s: %s" % (method, msg["error"]))
                return msg.get("result", {})
            self._event(msg)
        raise CDPError("%s: no answer in %.0f s" % (method, timeout))

    def pump(self, seconds=0.2):
        """Read the events that come within seconds (the network log's tail)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self._recv(deadline)
            if msg:
                self._event(msg)

    # -- helpers ---------------------------------------------------------
    def evaluate(self, expr, timeout=CMD_WAIT):
        """expr's value (JSON-able; a promise is awaited); CDPError if it throws."""
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True}, timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError("%s: %s" % (expr[:80], d.get("exception", {}).get(
                "description", d.get("text"))))
        return r["result"].get("value")

    def wait_for(self, expr, timeout=10.0, what=None):
        """expr's first truthy value, polled; CDPError past timeout."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = self.evaluate(expr, timeout=max(deadline - time.monotonic(), 1))
            except CDPError as e:
                last = str(e)
            else:
                if last:
                    return last
            if time.monotonic() >= deadline:
                raise CDPError("waited %.0f s for %s; last %r" % (timeout, what or expr, last))
            time.sleep(0.1)

    def navigate(self, url, timeout=10.0):
        """Load url (a new hash on the same page: the router's change) and
        wait until the document is complete."""
        r = self.send("Page.navigate", {"url": url}, timeout)
        if r.get("errorText"):
            raise CDPError("navigate %s: %s" % (url, r["errorText"]))
        self.wait_for("document.readyState === 'complete' && location.href", timeout,
                      "%s to load" % url)

    def fill(self, selector, value):
        """Set a form field's value as typing would (input and change events)."""
        self.evaluate("(() => { const e = document.querySelector(%s);"
                      " e.focus(); e.value = %s;"
                      " e.dispatchEvent(new Event('input', {bubbles: true}));"
                      " e.dispatchEvent(new Event('change', {bubbles: true})); })()"
                      % (json.dumps(selector), json.dumps(value)))

    def click(self, selector):
        self.evaluate("document.querySelector(%s).click()" % json.dumps(selector))

    def screenshot(self, path, full_page=True):
        """A PNG file at path: the whole page, or the viewport."""
        params = {"format": "png"}
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        r = self.send("Page.captureScreenshot", params)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def close(self):
        if self.ws:
            try:
                self.ws.close()
            except OSError:
                pass
            self.ws = None
        if self.proc:
            util.stop_tree(self.proc)
            self.proc = None
        util.remove_dir(self.profile)
