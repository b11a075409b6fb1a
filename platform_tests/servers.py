"""Helpers for tests that start real servers: a temporary Dagster instance, `dagster dev`, headless Chromium.

Everything binds 127.0.0.1, every wait is bounded, and every process started here runs in its own session
(process group), so that stopping it takes its children (code server, daemon, run workers, renderers) too.
"""

import contextlib
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv running the tests (/work/main/.venv/bin)
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def write_instance_config(dagster_home: Path) -> None:
    """The repository's dagster.yaml, with every storage path absolute under `dagster_home`."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    config["storage"]["sqlite"]["base_dir"] = str(dagster_home / "storage")
    config["local_artifact_storage"]["config"]["base_dir"] = str(dagster_home)
    config["compute_logs"]["config"]["base_dir"] = str(dagster_home / "compute_logs")
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def platform_env(dagster_home: Path, data_dir: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment of a platform process: this instance and data folder, no developer `DP_` overrides,
    and a throw-away HOME (Dagster, uv and Chromium write under it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DP_")}
    pythonpath = os.pathsep.join(p for p in (str(REPO / "platform"), env.get("PYTHONPATH")) if p)
    home.mkdir(parents=True, exist_ok=True)
    env.update(DAGSTER_HOME=str(dagster_home), DP_DATA_DIR=str(data_dir), HOME=str(home), PYTHONPATH=pythonpath)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM to the process group (start_new_session: its id is the leader's pid), SIGKILL if it lingers."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            return
    with contextlib.suppress(ProcessLookupError):  # the leader is gone: kill what is left (a renderer, a run worker)
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def start_daemon(env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start `dagster-daemon run` on the repository's workspace in a new session, output appended to `log_path`.

    Its process group holds the daemon, the code server it starts and every run worker (the default run launcher
    spawns them from the code server), so `stop_process_group` or `kill_process_group` reaches them all."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def kill_process_group(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGKILL to the whole process group at once (a crash, an OOM kill, a pulled plug); wait until none is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_until(f"process group {process.pid} to be gone", lambda: not group_members(process.pid), timeout, interval=0.1)


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis
            fields = stat.read_text().rpartition(")")[2].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(stat.parent.name))
    return members


def processes_with_env(name: str, value: str) -> dict[int, str]:
    """Live (not zombie) processes whose environment holds `name=value`, pid -> command line, from /proc.

    Every process a command starts inherits its environment, so this finds them all, in whichever process
    group or session they are, also after their parent is gone."""
    entry = f"{name}={value}".encode()
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to read
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
            if state != "Z" and entry in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def wait_until(
    what: str,
    ready: Callable[[], Any],
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    interval: float = 0.5,
) -> Any:
    """Poll `ready` until it returns something truthy (returned); raise, never hang, on timeout or a dead server."""
    deadline = time.monotonic() + timeout
    while True:
        result = ready()
        if result:
            return result
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server exited with {process.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class GraphQLError(Exception):
    pass


@dataclass
class DagsterDev:
    """A running `dagster dev` (webserver + daemon + code server) on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None, timeout: float = 30.0) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:
            raise GraphQLError(f"HTTP {exc.code}: {exc.read()[:2000]!r}") from exc
        if answer.get("errors"):
            raise GraphQLError(json.dumps(answer["errors"])[:2000])
        return answer["data"]

    def answers(self) -> bool:
        try:
            return bool(self.graphql("{ version }", timeout=5.0).get("version"))
        except (OSError, GraphQLError):
            return False

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _default_stop_signals() -> None:
    """In the child: SIGINT and SIGTERM back at their defaults, as a terminal's foreground job has them.

    An ignored signal stays ignored across exec, and a shell cannot trap a signal ignored on entry. The test
    process may ignore both: CI runs the suite as a background job (SIGINT ignored), and Dagster's in-process
    runs then give SIGTERM the handler SIGINT has. Inherited, that made ./dp up deaf to both."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start_session(argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`argv` in a new session, output to `log_path`: its process group is the one a terminal makes for a
    foreground job, so a signal to the group reaches everything it starts."""
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_stop_signals,
        )


@contextmanager
def dagster_dev(env: dict[str, str], cwd: Path, log_path: Path, start_timeout: float = 90.0) -> Iterator[DagsterDev]:
    """Start `dagster dev` on the repository's workspace and a free loopback port; stop it on the way out.

    It runs in a new session, so SIGTERM reaches it (a shell's background job ignores SIGINT, and Dagster
    gives SIGTERM the handler SIGINT has) and its whole process group can be stopped at once."""
    port = free_port()
    argv = [str(BIN / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(REPO / "workspace.yaml")]
    server = DagsterDev(start_session(argv, env, cwd, log_path), port, log_path)
    process = server.process
    try:
        try:
            wait_until("GraphQL to answer { version }", server.answers, start_timeout, process)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- dagster dev output ---\n{server.log_tail()}") from None
        yield server
    finally:
        stop_process_group(process)


@dataclass
class Page:
    url: str
    screenshot: Path
    dom: str

    @property
    def text(self) -> str:
        """The rendered page's visible text: scripts and styles dropped, tags removed, whitespace collapsed."""
        body = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", self.dom, flags=re.S | re.I)
        return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip()


def chromium_page(
    url: str,
    screenshot: Path,
    profile_dir: Path,
    env: dict[str, str],
    *,
    window: str = "1400,900",
    virtual_time_ms: int = 15000,
    timeout: float = 90.0,
) -> Page:
    """One headless Chromium load of `url`: a PNG screenshot and the DOM after `virtual_time_ms` of virtual time.

    Two short runs with the same profile (a screenshot, then --dump-dom); Chromium's stderr (D-Bus noise on a
    machine without a session bus) goes to a log next to the screenshot."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    base = [
        str(CHROMIUM),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile_dir}",
        f"--window-size={window}",
        f"--virtual-time-budget={virtual_time_ms}",
    ]
    log_path = screenshot.with_suffix(".chromium.log")
    with open(log_path, "wb") as log:
        _run_chromium([*base, f"--screenshot={screenshot}", url], env, timeout, stdout=log, stderr=log)
        dom = _run_chromium([*base, "--dump-dom", url], env, timeout, stdout=subprocess.PIPE, stderr=log)
    if not screenshot.exists():
        raise AssertionError(f"chromium wrote no screenshot of {url}; see {log_path}")
    return Page(url, screenshot, dom.decode(errors="replace"))


def _run_chromium(argv: list[str], env: dict[str, str], timeout: float, **streams: Any) -> bytes:
    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True, **streams)
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"chromium did not finish within {timeout:.0f} s: {argv[-1]}") from None
    finally:
        stop_process_group(process, timeout=5.0)
    if process.returncode != 0:
        raise AssertionError(f"chromium exited with {process.returncode} on {argv[-1]}")
    return out or b""
