#!/usr/bin/env python3
"""The local stack behind `make run` and `make test`.

    devstack.py run       emulator + table/queues + granter poller + API on :8080
    devstack.py test      emulator + unit/integration tests + the README's curl session
    devstack.py emulator  only the emulator, in the foreground
    devstack.py package   release zips of every function for provided.al2023
    devstack.py bench     every benchmark; writes bench/RESULTS.md

The emulator is whatever already answers on 127.0.0.1:4566 (a LocalStack from
localstack/ counts); otherwise moto, started here through scripts/emulator.py
and stopped again on the way out. Only the standard library and boto3 (which
moto brings) are used.
"""

import argparse
import json
import re
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

from frontdoor import FrontDoor

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
STATE = ROOT / ".local"
TARGET = ROOT / "target" / "debug"
EMULATOR_PORT = 4566
EMULATOR = f"http://127.0.0.1:{EMULATOR_PORT}"
API_PORT = 8080


def log(message):
    print(f"[devstack] {message}", file=sys.stderr, flush=True)


def answers(url):
    """True if anything speaks HTTP at `url`, whatever the status."""
    try:
        urllib.request.urlopen(url, timeout=1)
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def listening(port):
    """True once something accepts connections on 127.0.0.1:`port`. A probe
    that sends no request, so cargo-lambda logs no "no such function" error."""
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=1):
            return True
    except OSError:
        return False


def stop(process, timeout=10):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(name, args, env, quiet, mode="w"):
    """A child process whose output goes to .local/<name>.log when quiet
    (appended with mode "a"), to the terminal otherwise."""
    STATE.mkdir(exist_ok=True)
    if not quiet:
        return subprocess.Popen([str(a) for a in args], cwd=ROOT, env=env)
    with open(STATE / f"{name}.log", mode) as log_file:  # the child keeps its own copy
        return subprocess.Popen(
            [str(a) for a in args], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


@contextmanager
def running(name, args, env, quiet=False):
    """A child process (see `spawn`) for the duration of the block."""
    process = spawn(name, args, env, quiet)
    try:
        yield process
    finally:
        stop(process)


@contextmanager
def emulator():
    if answers(EMULATOR):
        log(f"using the emulator already answering at {EMULATOR}")
        yield EMULATOR
        return
    args = [VENV_BIN / "python", ROOT / "scripts" / "emulator.py", "--port", EMULATOR_PORT]
    with running("emulator", args, os.environ.copy(), quiet=True) as process:
        deadline = time.time() + 60
        while not answers(EMULATOR):
            if process.poll() is not None:
                sys.exit(f"the emulator exited; see {STATE / 'emulator.log'}")
            if time.time() > deadline:
                sys.exit("the emulator did not answer within 60 s")
            time.sleep(0.2)
        log(f"started the emulator (moto, DynamoDB requests serialised) on {EMULATOR}")
        yield EMULATOR


def aws_env(endpoint, **settings):
    """Environment for anything that talks to the emulator: fake credentials,
    a fixed region, the venv's tools (cargo-lambda) on PATH."""
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_EC2_METADATA_DISABLED="true",
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update({k: str(v) for k, v in settings.items()})
    return env


def cargo(*args, env=None):
    start = time.time()
    subprocess.run(["cargo", *args], cwd=ROOT, env=env, check=True)
    log(f"cargo {' '.join(map(str, args))} took {time.time() - start:.0f} s")


def admin(env, *args):
    """Runs the admin CLI; its JSON output holds settings by variable name."""
    output = subprocess.run(
        [TARGET / "waiting-room-admin", *args], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output)


def provision(env, name, port):
    """Table, queues and topics named after `name`, a fresh admission
    signing key and join signing key, and the demo origin on `port` as
    where admitted fans go: everything the functions' settings need."""
    settings = admin(env, "--table", name, "provision", "--queue-prefix", name)
    settings.update(admin(env, "new-signing-key", "--kid", f"local-{uuid.uuid4().hex[:6]}"))
    settings.update(admin(env, "new-join-key"))
    settings["DEFAULT_ORIGIN_URL"] = f"http://localhost:{port}/checkout/{{eventId}}"
    return settings


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The functions that AWS invokes from queues, streams and schedules, run
# locally as pollers of the same handlers. The stream pollers save their
# position in .local/, so a restarted one neither replays nor skips records.
WORKERS = {
    "granter": ["granter", "poll", "--checkpoint", STATE / "granter-{table}.stream"],
    "sweeper": ["sweeper", "poll", "--every", "5"],
    "checkout-outcomes": ["checkout-outcomes", "poll"],
    "publisher": ["publisher", "poll", "--checkpoint", STATE / "publisher-{table}.stream"],
}


class Supervisor:
    """Keeps the workers running, as Lambda keeps its functions: a worker
    that exits is started again after a pause that grows while it keeps
    dying, and the terminal says so (its output stays in .local/<name>.log
    when quiet)."""

    def __init__(self, env, quiet):
        self.env, self.quiet = env, quiet
        self.processes, self.started_at, self.restart_at, self.pauses = {}, {}, {}, {}
        self.restarts = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def start(self):
        for name in WORKERS:
            self._spawn(name, mode="w")
        self.thread.start()
        return self

    def _spawn(self, name, mode):
        binary, *args = WORKERS[name]
        args = [TARGET / binary, *(str(a).format(table=self.env["TABLE_NAME"]) for a in args)]
        self.processes[name] = spawn(name, args, self.env, self.quiet, mode)
        self.started_at[name] = time.time()

    def _watch(self):
        while not self.stopping.wait(0.5):
            now = time.time()
            for name, process in list(self.processes.items()):
                due = self.restart_at.get(name)
                if due is not None:
                    if now >= due:
                        del self.restart_at[name]
                        self._spawn(name, mode="a")
                        self.restarts += 1
                        log(f"restarted the {name} worker (pid {self.processes[name].pid})")
                    continue
                code = process.poll()
                if code is None:
                    if now - self.started_at[name] > 60:
                        self.pauses.pop(name, None)  # up a while: next pause is short again
                    continue
                pause = self.pauses.get(name, 0.5)
                self.pauses[name] = min(pause * 2, 30)
                self.restart_at[name] = now + pause
                log(f"the {name} worker exited with code {code}; restarting it in {pause:g} s")

    def stop(self):
        self.stopping.set()
        self.thread.join()
        for process in self.processes.values():
            stop(process)


@contextmanager
def waiting_room(env, port, quiet):
    """The workers as local pollers, supervised, and the HTTP functions run
    by `cargo lambda watch` behind the local front door on `port`, as in AWS
    behind API Gateway (scripts/frontdoor.py says why)."""
    if answers(f"http://127.0.0.1:{port}/"):
        sys.exit(f"something already answers on port {port}; stop it first")
    # cargo-lambda's own HTTP server and invoke API stay on a private
    # loopback port; only the front door is on `port`. Its CORS is off: in
    # AWS only the configured origins get a grant, locally the pages come
    # from this same origin and need none.
    invoke_port = free_port()
    watch = ["cargo", "lambda", "watch", "--disable-cors", "--invoke-address", "127.0.0.1", "--invoke-port", invoke_port]
    with ExitStack() as stack:
        workers = Supervisor(env, quiet).start()
        stack.callback(workers.stop)
        api = stack.enter_context(running("api", watch, env, quiet))
        deadline = time.time() + 180
        while not listening(invoke_port):
            if api.poll() is not None:
                sys.exit(f"cargo lambda watch exited; see {STATE / 'api.log'}")
            if time.time() > deadline:
                sys.exit("the API did not answer within 180 s")
            time.sleep(0.5)
        door = FrontDoor(port, f"http://127.0.0.1:{invoke_port}", ROOT / "Cargo.toml").start()
        stack.callback(door.stop)
        yield api, workers


def cmd_emulator(_args):
    with emulator():
        log("Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def cmd_run(args):
    cargo("build", "--workspace")
    with emulator() as endpoint:
        env = aws_env(endpoint)
        env = aws_env(endpoint, **provision(env, "waiting-room", args.port))
        with waiting_room(env, args.port, quiet=False) as (api, _workers):
            log("running:")
            log(f"  page      http://localhost:{args.port}/waiting-room/E1 (open it in a browser; a second browser is the next fan)")
            log(f"  origin    http://localhost:{args.port}/checkout/E1 (the demo checkout admitted fans are sent to)")
            log(f"  API       http://localhost:{args.port}/api/waiting-room (front door; functions by cargo lambda watch)")
            log(f"  emulator  {endpoint} (table {env['TABLE_NAME']})")
            log(f"  workers   {', '.join(WORKERS)} (their output below; restarted if they exit)")
            log(f"  admin     AWS_ENDPOINT_URL={endpoint} cargo run -q -p admin -- show --event E1")
            log(f"  admin API http://localhost:{args.port}/admin/events (no auth locally; IAM in AWS)")
            log(
                f"try: curl -s -XPOST localhost:{args.port}/api/waiting-room/sessions "
                "-H 'content-type: application/json' -d '{\"eventId\":\"E1\",\"userId\":\"U1\"}'"
            )
            log("Ctrl-C stops the API, the workers and the emulator")
            try:
                code = api.wait()
                log(f"cargo lambda watch exited with code {code}; stopping everything")
            except KeyboardInterrupt:
                pass


def cmd_test(_args):
    cargo("build", "--workspace", "--all-targets", "--locked")
    calls = ROOT / "target" / "aws-calls"
    shutil.rmtree(calls, ignore_errors=True)
    with emulator() as endpoint:
        # Every emulator test records the AWS calls the functions' code makes;
        # the least-privilege check then runs last, over all of them.
        env = aws_env(endpoint, WR_AWS_CALLS_DIR=calls)
        if shutil.which("cargo-nextest"):
            run = ["nextest", "run", "--workspace", "--locked", "--no-fail-fast"]
            cargo(*run, "-E", "not binary(least_privilege)", env=env)
            cargo(*run, "-E", "binary(least_privilege)", env=env)
        else:
            log("cargo-nextest not found; running cargo test")
            cargo("test", "--workspace", "--locked", "--no-fail-fast", env=env)
            # Once more, now that every other test's calls are recorded.
            cargo("test", "-p", "integration-tests", "--test", "least_privilege", "--locked", env=env)
        start = time.time()
        smoke_test(env)
        log(f"the smoke test took {time.time() - start:.0f} s")
    log("all tests passed")


# --- The README's curl session, against the real binaries ---------------------


def curl(*args):
    """Runs curl as the README does; returns (status, parsed JSON or None)."""
    result = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args], check=True, capture_output=True, text=True
    )
    body, _, status = result.stdout.rpartition("\n")
    return int(status), (json.loads(body) if body.strip() else None)


def response_headers(*args):
    """The response headers (lower-cased names) of a curl request."""
    result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", *args], check=True, capture_output=True, text=True)
    lines = result.stdout.splitlines()[1:]
    return {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if ":" in line)}


def expect(condition, message):
    if not condition:
        sys.exit(f"smoke test failed: {message}")
    log(f"ok: {message}")


def poll_until(base, session_id, wanted, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        status, body = curl(f"{base}/api/waiting-room/sessions/{session_id}")
        if status == 200 and wanted(body):
            return body
        time.sleep(0.3)
    sys.exit(f"smoke test failed: {session_id} never reached the expected state (last: {body})")


def smoke_test(env):
    """Join, poll, get in, leave, next one in: through cargo lambda watch and
    the granter binary, with curl, exactly as the README shows it."""
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"localhost:{port}"
    env = aws_env(env["AWS_ENDPOINT_URL"], DEFAULT_CAPACITY=1, **provision(env, name, port))
    try:
        with waiting_room(env, port, quiet=True) as (_api, workers):
            # A worker that dies is restarted (its stream poller resuming from
            # its checkpoint); the rest of the session runs on the new one.
            workers.processes["granter"].kill()
            deadline = time.time() + 30
            while workers.restarts == 0 and time.time() < deadline:
                time.sleep(0.2)
            expect(workers.restarts == 1, "a killed granter worker is restarted")
            # The killed worker's last long poll (up to 5 s, RECEIVE_WAIT in
            # runtime/poll.rs) may still be open at the emulator: a message
            # arriving now would go to nobody and hold its FIFO group for the
            # visibility timeout, as SQS does with a consumer that died. Let
            # it lapse before the first join.
            time.sleep(6)
            join = [f"-XPOST", f"{base}/api/waiting-room/sessions", "-H", "content-type: application/json", "-d"]
            status, first = curl(*join, '{"eventId":"E1","userId":"U1"}')
            expect(status == 202 and first["status"] == "WAITING", "POST /sessions answers 202 WAITING")
            admitted = poll_until(base, first["sessionId"], lambda b: b["status"] == "ACTIVE")
            expect(admitted.get("admissionToken", "").count(".") == 2, "the first user is admitted, with a token")
            status, jwks = curl(f"{base}/.well-known/jwks.json")
            expect(status == 200 and jwks["keys"][0]["crv"] == "Ed25519", "the JWKS serves the public key")
            status, second = curl(*join, '{"eventId":"E1","userId":"U2"}')
            expect(status == 202, "a second user joins")
            waiting = poll_until(base, second["sessionId"], lambda b: b.get("position") == 1)
            expect(waiting["status"] == "WAITING", "the second user waits, first in line")
            status, _ = curl("-XPOST", f"{base}/api/waiting-room/sessions/{first['sessionId']}:leave")
            expect(status == 204, ":leave answers 204")
            poll_until(base, second["sessionId"], lambda b: b["status"] == "ACTIVE")
            expect(True, "the next user is admitted when the first leaves")
            status, _ = curl("-XPOST", f"{base}/api/waiting-room/sessions/{first['sessionId']}:leave")
            expect(status == 204, "leaving again answers 204")
            status, shown = curl(f"{base}/admin/events/E1")
            expect(status == 200 and shown["state"] == "OPEN" and shown["active"] == 1, "GET /admin/events/E1 shows the event")
            status, paused = curl("-XPOST", f"{base}/admin/events/E1:pause")
            expect(status == 200 and paused["state"] == "PAUSED", "POST /admin/events/E1:pause pauses it")
            status, resumed = curl("-XPOST", f"{base}/admin/events/E1:resume")
            expect(status == 200 and resumed["state"] == "OPEN", "POST /admin/events/E1:resume resumes it")
            status, error = curl(*join, '{"eventId":"","userId":"U3"}')
            expect(status == 400 and error["field"] == "eventId", "an empty eventId gets a 400 JSON error")
            for method in ("GET", "OPTIONS"):
                headers = response_headers(
                    "-X", method, f"{base}/api/waiting-room/sessions/{first['sessionId']}",
                    "-H", "Origin: https://elsewhere.example", "-H", "Access-Control-Request-Method: POST",
                )
                leaked = {k for k in headers if k.startswith("access-control-allow")}
                expect(not leaked, f"{method} from another origin gets no CORS grant (got {sorted(leaked)})")
            status, error = curl(f"{base}/nowhere")
            expect(status == 404 and error["error"] == "not_found", "an unknown route gets a 404 JSON error")
            status, error = curl("-XDELETE", f"{base}/api/waiting-room/sessions/{first['sessionId']}")
            expect(status == 405 and error["error"] == "method_not_allowed", "a wrong method gets 405 JSON")
            local_edges(base, first["sessionId"])
            browser_test(f"http://{base}", env)
        quiet_logs()
    finally:
        remove_resources(env)


# --- The waiting page in a real browser ---------------------------------------

SCREENSHOTS = ROOT / "target" / "screenshots"


def chromium_and_driver():
    """Paths of Debian's chromium and chromedriver, installed here where
    missing and possible; None (and why) where not."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found, None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "chromium and chromedriver are missing and cannot be installed here (needs root and apt-get)"
    log("installing chromium and chromium-driver (Debian packages) for the browser test")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.STDOUT}
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    installed = subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], env=apt_env, **quiet)
    if installed.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=apt_env, **quiet)
        installed = subprocess.run(["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"], env=apt_env, **quiet)
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if installed.returncode != 0 or not all(found):
        return None, "apt-get could not install chromium and chromium-driver"
    return found, None


class Browser:
    """One fan's headless Chromium (its own profile and cookies)."""

    def __init__(self, paths, script=True, language="en"):
        from selenium import webdriver  # noqa: PLC0415 - from the venv, only needed here
        from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

        options = webdriver.ChromeOptions()
        options.binary_location = paths[0]
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=720,900", f"--lang={language}"):
            options.add_argument(flag)
        prefs = {"intl.accept_languages": language}
        if not script:
            prefs["profile.managed_default_content_settings.javascript"] = 2
        options.add_experimental_option("prefs", prefs)
        self.driver = webdriver.Chrome(service=Service(executable_path=paths[1]), options=options)
        self.driver.set_page_load_timeout(120)

    def find(self, css):
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def click(self, label):
        """Presses the button (or button-like link) whose text is `label`."""
        from selenium.webdriver.common.by import By  # noqa: PLC0415

        for element in self.driver.find_elements(By.CSS_SELECTOR, "button, a.button"):
            if element.text.strip() == label:
                element.click()
                return
        sys.exit(f"browser test failed: no button {label!r} on {self.driver.current_url}")

    def wait_for(self, what, check, limit=60):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - a page mid-navigation
                pass
            time.sleep(0.25)
        sys.exit(f"browser test failed: {what} (at {self.driver.current_url}: {self.driver.page_source[:300]})")

    def heading(self):
        return self.find("h1").text

    def shot(self, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))

    def close(self):
        self.driver.quit()


def browser_test(base, env):
    """join → wait → admitted → the demo origin → complete or give up, the
    next fan let in, and leave: in headless Chromium, with JavaScript and
    without, English and French; screenshots under target/screenshots/."""
    paths, why = chromium_and_driver()
    if paths is None:
        log(f"SKIPPED the browser test: {why}")
        return
    started = time.time()
    browsers = []

    def fan(**options):
        browsers.append(Browser(paths, **options))
        return browsers[-1]

    try:
        # With JavaScript: two fans, one slot.
        first, second = fan(), fan()
        first.driver.get(f"{base}/waiting-room/E-page")
        expect(first.find("html").get_attribute("lang") == "en" and first.heading() == "Join the line", "the page offers to join, in English")
        first.shot("join")
        first.click("Join the line")
        first.wait_for("the first fan reaches the demo origin", lambda: "/checkout/E-page" in first.driver.current_url)
        expect(first.driver.current_url.endswith("/checkout/E-page"), "the origin swapped the token for its cookie (not in the address)")
        expect(first.heading() == "Checkout", "the first fan is let in to the demo checkout")
        first.shot("checkout")
        # The second fan joins with the keyboard alone.
        from selenium.webdriver.common.keys import Keys  # noqa: PLC0415

        second.driver.get(f"{base}/waiting-room/E-page")
        second.find("body").send_keys(Keys.TAB)
        second.driver.switch_to.active_element.send_keys(Keys.ENTER)
        second.wait_for("the second fan waits first in line", lambda: second.find("#position").text == "1")
        expect(second.heading() == "You are in line", "the second fan waits, position 1, people ahead 0")
        expect(second.find("#announce").get_attribute("role") == "status", "the page has a polite live region for its announcements")
        expect(second.find("#progress").get_attribute("value") == "100", "the progress bar is full at the front of the line")
        second.shot("waiting")
        first.click("Complete purchase")
        first.wait_for("the purchase completes", lambda: "Purchase complete" in first.heading())
        first.shot("completed")
        second.wait_for("the page polls and the second fan is let in", lambda: "/checkout/E-page" in second.driver.current_url)
        expect(second.heading() == "Checkout", "completing a purchase frees the slot and the next fan's page takes them to the origin")
        second.click("Give up")
        second.wait_for("giving up", lambda: "gave up" in second.heading())

        # The puzzle: the page solves it before it joins.
        status, _ = curl("-XPUT", f"{base}/admin/events/E-puzzle", "-H", "content-type: application/json", "-d", '{"puzzleDifficulty": 12}')
        expect(status == 200, "an operator sets a puzzle of 12 bits on E-puzzle")
        solver = fan()
        solver.driver.get(f"{base}/waiting-room/E-puzzle")
        rate = solver.driver.execute_script(PUZZLE_RATE)
        log(f"the waiting page's puzzle solver runs {rate:,.0f} hashes per second in headless Chromium (one core)")
        solver.click("Join the line")
        solver.wait_for("the puzzle is solved and the fan joins", lambda: "/checkout/E-puzzle" in solver.driver.current_url)
        expect(solver.heading() == "Checkout", "the page solves the event's puzzle (12 bits), joins, and the fan is let in")

        # Without JavaScript: forms and the meta refresh alone.
        third, fourth = fan(script=False), fan(script=False)
        third.driver.get(f"{base}/waiting-room/E-plain")
        third.click("Join the line")
        third.wait_for("without JavaScript the first fan reaches the origin", lambda: "/checkout/E-plain" in third.driver.current_url)
        fourth.driver.get(f"{base}/waiting-room/E-plain")
        fourth.click("Join the line")
        fourth.wait_for("without JavaScript the second fan waits", lambda: fourth.heading() == "You are in line")
        fourth.shot("waiting-without-javascript")
        fourth.click("Leave the line")
        fourth.wait_for("leaving", lambda: "left the line" in fourth.find("main").text)
        fourth.shot("left")
        fourth.click("Join the line")
        fourth.wait_for("joining again", lambda: fourth.heading() == "You are in line")
        third.click("Give up")
        third.wait_for("giving up without JavaScript", lambda: "gave up" in third.heading())
        fourth.wait_for("the meta refresh takes the next fan to the origin", lambda: "/checkout/E-plain" in fourth.driver.current_url, limit=90)
        fourth.click("Complete purchase")
        fourth.wait_for("completing without JavaScript", lambda: "Purchase complete" in fourth.heading())
        expect("Purchase complete" in fourth.heading(), "without JavaScript: join, wait, leave, join again, let in by the meta refresh, complete")

        # French, by Accept-Language.
        french = fan(language="fr")
        french.driver.get(f"{base}/waiting-room/E-page")
        expect(french.find("html").get_attribute("lang") == "fr" and french.heading() == "Rejoindre la file", "a French browser gets the page in French")
        french.shot("join-fr")
    finally:
        for browser in browsers:
            browser.close()
    log(f"the browser test took {time.time() - started:.0f} s; screenshots in {SCREENSHOTS.relative_to(ROOT)}/")


# How fast the page's own solver (wrPuzzle in page.js) hashes in this browser.
PUZZLE_RATE = """
const count = 300000, start = performance.now();
for (let n = 0; n < count; n++) {
  wrPuzzle.zeroBits(wrPuzzle.sha256("wr-puzzle-v1\\nE1\\nfan-1\\n1800000000\\n" + n));
}
return count / ((performance.now() - start) / 1000);
"""


def quiet_logs():
    """A healthy run, bad requests and a killed worker included, logs no
    WARN or ERROR line: one there means something is wrong."""
    noisy = []
    for name in ["api", *WORKERS]:
        for line in (STATE / f"{name}.log").read_text(errors="replace").splitlines():
            if re.search(r'"level":"(WARN|ERROR)"|\b(WARN|ERROR)\b', line):
                noisy.append(f"{name}: {line[:200]}")
    expect(not noisy, "the functions and workers logged no WARN or ERROR line" + "".join(f"\n  {n}" for n in noisy[:10]))


def local_edges(base, session_id):
    """What cargo-lambda's own server used to answer, now our functions'
    JSON through the front door (scripts/frontdoor.py)."""
    session = f"{base}/api/waiting-room/sessions/{session_id}"
    status, error = curl(f"{base}/")
    expect(status == 404 and error["error"] == "not_found", "GET / gets a 404 JSON error")
    for method in ("TRACE", "get"):
        status, error = curl("-X", method, session)
        expect(status == 405 and error["error"] == "method_not_allowed", f"{method} gets a 405 JSON error")
    headers = response_headers("-I", session)
    status, size = subprocess.run(
        ["curl", "-s", "-I", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", session],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    expect(
        status == "405" and headers.get("allow") == "GET" and size == "0",
        "HEAD gets the 405 headers (Allow: GET) and no body, as API Gateway routes it",
    )
    not_utf8 = STATE / "not-utf8.json"
    not_utf8.write_bytes(b'{"eventId":"E1","userId":"\xff\xfe"}')
    status, error = curl(
        "-XPOST", f"{base}/api/waiting-room/sessions", "-H", "content-type: application/json",
        "--data-binary", f"@{not_utf8}",
    )
    expect(status == 400 and error["error"] == "invalid_json", "a body that is not UTF-8 gets a 400 JSON error")
    status, error = curl("-XPOST", f"{base}/2015-03-31/functions/join/invocations", "-d", "{}")
    expect(status == 404 and error["error"] == "not_found", "the function-invoke API is not on the public port")


def remove_resources(env):
    import boto3  # noqa: PLC0415 - from the venv, only needed here

    session = boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    )
    endpoint = env["AWS_ENDPOINT_URL"]
    session.client("dynamodb", endpoint_url=endpoint).delete_table(TableName=env["TABLE_NAME"])
    sqs = session.client("sqs", endpoint_url=endpoint)
    for name in ("JOIN_QUEUE_URL", "JOIN_DLQ_URL", "CHECKOUT_QUEUE_URL", "CHECKOUT_DLQ_URL"):
        sqs.delete_queue(QueueUrl=env[name])
    sns = session.client("sns", endpoint_url=endpoint)
    for name in ("EVENTS_TOPIC_ARN", "ADMISSIONS_TOPIC_ARN"):
        sns.delete_topic(TopicArn=env[name])
    for checkpoint in STATE.glob(f"*-{env['TABLE_NAME']}.stream"):
        checkpoint.unlink()


# --- Release packages for AWS Lambda (provided.al2023) ------------------------

# Amazon Linux 2023's glibc: a binary needing a newer symbol would not start.
AL2023_GLIBC = (2, 34)


def lambda_architecture():
    """arm64 where its Rust target is installed (Graviton is cheaper per
    millisecond); x86_64 otherwise. No target is downloaded."""
    installed = subprocess.run(
        ["rustup", "target", "list", "--installed"], capture_output=True, text=True, check=True
    ).stdout.split()
    if "aarch64-unknown-linux-gnu" in installed:
        return "arm64", "--arm64", "aarch64-unknown-linux-gnu"
    return "x86_64", "--x86-64", "x86_64-unknown-linux-gnu"


def newest_glibc_symbol(binary):
    symbols = subprocess.run(["objdump", "-T", binary], capture_output=True, text=True, check=True).stdout
    versions = {
        tuple(int(part) for part in version.split("."))
        for version in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", symbols)
    }
    return max(versions, default=(0, 0))


def cmd_package(_args):
    functions = sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "Cargo.toml").exists())
    architecture, flag, triple = lambda_architecture()
    env = aws_env("http://unused")
    packages = [arg for name in functions for arg in ("-p", name)]
    # cargo-lambda links with zig (from PyPI, in .venv) against an old glibc.
    subprocess.run(
        ["cargo", "lambda", "build", "--release", flag, "--output-format", "zip", *packages],
        cwd=ROOT,
        env=env,
        check=True,
    )
    too_new = []
    for name in functions:
        binary = ROOT / "target" / triple / "release" / name
        glibc = newest_glibc_symbol(binary)
        zip_size = (ROOT / "target" / "lambda" / name / "bootstrap.zip").stat().st_size
        log(f"{name}: {zip_size / 1e6:.1f} MB zip, needs glibc {'.'.join(map(str, glibc))}")
        if glibc > AL2023_GLIBC:
            too_new.append(name)
    if too_new:
        sys.exit(f"these binaries need a glibc newer than AL2023's 2.34: {', '.join(too_new)}")
    (ROOT / "target" / "lambda" / "ARCHITECTURE").write_text(architecture + "\n")
    log(f"packaged {len(functions)} functions for {architecture} in target/lambda/; deploy with Architecture={architecture}")


def cmd_bench(args):
    """Release builds, criterion, then `bench report` against a freshly
    provisioned table and queues on the emulator."""
    cargo("build", "--release", "--workspace", "--locked")
    # `provision` runs the debug admin CLI, which a fresh clone has not built.
    cargo("build", "-p", "admin", "--locked")
    cargo("bench", "-p", "bench", "--bench", "handlers", "--locked")
    with emulator() as endpoint:
        env = aws_env(endpoint)
        env = aws_env(endpoint, **provision(env, f"bench-{uuid.uuid4().hex[:6]}"))
        report = [ROOT / "target" / "release" / "bench", "report", "--python", VENV_BIN / "python", *[a for a in args.bench_args if a != "--"]]
        subprocess.run([str(a) for a in report], cwd=ROOT, env=env, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="the whole waiting room on localhost")
    run.add_argument("--port", type=int, default=API_PORT)
    run.set_defaults(handler=cmd_run)
    commands.add_parser("test", help="every test").set_defaults(handler=cmd_test)
    commands.add_parser("emulator", help="only the emulator").set_defaults(handler=cmd_emulator)
    commands.add_parser("package", help="release zips for Lambda").set_defaults(handler=cmd_package)
    bench = commands.add_parser("bench", help="every benchmark, into bench/RESULTS.md")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="passed to `bench report`")
    bench.set_defaults(handler=cmd_bench)
    args = parser.parse_args()
    try:
        args.handler(args)
    except subprocess.CalledProcessError as failure:
        sys.exit(f"{' '.join(map(str, failure.cmd))} failed with exit code {failure.returncode}")


if __name__ == "__main__":
    main()
