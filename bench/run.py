"""
The benchmark: what the gateway costs per request, measured against baselines.

    python bench/run.py                  # every row, 10 s each (about 3 minutes)
    python bench/run.py --quick          # 3 s runs, for a before/after loop
    python bench/run.py --only gw-httpjson-50 --only fake-50
    python bench/run.py --profile gw-httpjson-50   # flamegraph or pstats too
    python bench/run.py --list           # the rows

Run it with the Python that has the project installed (the venv's).  It
needs ``wrk`` and ``nginx`` with the echo module; when they are missing it
installs them with apt-get (``wrk nginx-light``, and
``libnginx-mod-http-echo`` if nginx-light did not bring it).

One run starts a fake Lambda (nginx answering the Invoke API path with a
fixed reply, instantly for ``fast-*`` functions and after 1 s for ``slow-*``
ones), then for each row starts the server under test on 127.0.0.1, warms it
up, and measures it with wrk: req/s, p50/p99 latency, the server's CPU
milliseconds per request (utime+stime from /proc over the whole process
tree, divided by the requests wrk completed) and, for a Python server, how
much of it the garbage collector took (``bench/gcwatch``), its peak RSS (VmHWM summed
over the tree) and errors (wrk's socket errors plus responses >= 400).  It
prints a table with the ratios and targets of issue 9 and writes it to
``bench/results/<date>-<rev>.md`` and ``.json``.

Every subprocess runs in its own process group and is killed when the run
ends, however it ends.  Nothing listens beyond 127.0.0.1.  This file is not
collected by pytest: the bench is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime
import functools
import http.client
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

HOST = "127.0.0.1"
INVOKE_PATH = "/2015-03-31/functions/{name}/invocations"
GATEWAY_PREFIX = "/lambda/"
REQUEST_BODY = '{"hello":"world","n":1}'
BACKLOG = 4096
STATUS_PATH = "/nginx-status"  # the fake's request counter (bench/cpuprobe.py)
CLK_TCK = os.sysconf("SC_CLK_TCK")

# The fake's replies, one per event format, each a valid reply of that
# format with a small JSON body.
REPLIES = {
    "httpjson": json.dumps(
        {
            "type": "HTTPJSON-REP",
            "meta": {"status": 200, "headers": {"content-type": "application/json"}},
            "body": '{"ok":true}',
        },
        separators=(",", ":"),
    ),
    "apigw-v2": json.dumps(
        {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": '{"ok":true}',
            "isBase64Encoded": False,
        },
        separators=(",", ":"),
    ),
}
# The function name the fake serves each format's reply under.
FUNCTION_SUFFIX = {"httpjson": "httpjson", "apigw-v2": "v2"}

# Issue 9's targets.
TARGET_RATIO_RPROXY = 2.0
TARGET_CPU_MS = 0.45
TARGET_WORKERS_RATIO = 1.7
TARGET_ADDED_P50_MS = 0.5
TARGET_10K_RSS_MB = 300.0
TARGET_10K_CPU_RATIO = 1.5


class BenchError(Exception):
    """
    The bench cannot go on; its text says why.
    """


class NotAvailable(Exception):
    """
    The row cannot run on this gateway (a feature not implemented yet).
    """


# --------------------------------------------------------------------------
# The rows


@dataclass(frozen=True)
class Row:
    """
    One measurement: which server, which function, how many connections.

    ``kind`` is ``fake`` (nginx directly), ``rproxy`` (ReverseProxyResource),
    ``floor-hello``, ``floor-agent`` or ``floor-treq`` (bench/floor.py: what
    Twisted alone costs) or ``gateway``.
    """

    name: str
    kind: str
    description: str
    connections: int
    threads: int = 1
    function: str = "fast-httpjson"
    format: str = "httpjson"
    workers: int = 1
    duration: float = 10.0
    quick_duration: float = 3.0
    timeout: float = 2.0
    warmup: bool = True
    fd_bound: bool = False
    """``max_connections`` is what the open-files limit leaves beside the clients."""
    connection_cap: int | None = None
    """At most this ``max_connections`` for an ``fd_bound`` row."""
    steady_window: tuple[float, float] | None = None
    """
    Seconds into the run between which CPU per request is also measured in
    steady state, from the server's CPU and the requests the fake received
    in that window alone (see L{steady_cpu}).
    """


ROWS = (
    Row("fake-50", "fake", "fake Lambda (nginx) directly", 50, threads=2),
    Row("fake-1", "fake", "fake Lambda (nginx) directly, 1 connection", 1),
    Row("rproxy-50", "rproxy", "twisted.web.proxy.ReverseProxyResource", 50),
    Row("floor-hello-50", "floor-hello", "Twisted's floor: twisted.web Site, fixed reply", 50),
    Row("floor-agent-50", "floor-agent", "Twisted's floor: Site + pooled Agent POST", 50),
    Row("floor-treq-50", "floor-treq", "Twisted's floor: Site + treq POST over that Agent", 50),
    Row("floor-treq-1", "floor-treq", "Twisted's floor: Site + treq POST, 1 connection", 1),
    Row("gw-httpjson-50", "gateway", "gateway, httpjson", 50),
    Row(
        "gw-apigw-v2-50", "gateway", "gateway, apigw-v2", 50, function="fast-v2", format="apigw-v2"
    ),
    Row("gw-httpjson-1", "gateway", "gateway, httpjson, 1 connection", 1),
    Row("gw-workers2-50", "gateway", "gateway, httpjson, workers = 2", 50, workers=2),
    # The gateway must hold 10,000 invocations under way without failing
    # one.  wrk is a closed loop: each connection sends its next request when
    # the last one is answered, so with one CPU-bound process serving X req/s
    # every request waits about 10,000 / X seconds (Little's law), 1 s of it
    # in the function: 7.7 s at the 1,300 req/s one core gives, 14 s at 715.
    # That wait is the row's load, not a failure, so the timeout is 14 s, in
    # a 15 s run (the quick run too: shorter, no timeout could show): a reply
    # later than that, or a request sent in the first second still unanswered
    # at the end, counts as an error, as do error statuses and socket errors;
    # p50 and p99 show the wait.  No warm-up: ending one disconnects 10,000
    # clients, and cancelling their calls takes the gateway seconds of CPU
    # that would land in the measured run.  For the same reason the run's
    # CPU over its requests is not the cost of a request here: up to 10,000
    # requests are still under way when wrk stops, beside the 20,000-30,000
    # answered in 15 s, and the run charges the work done for them, and
    # their cancelling, to the ones answered.
    # So CPU per request is also measured in a window of the steady state
    # (from 4 s to 14 s: the server's CPU over the requests the fake received
    # in it, each request one call), which the target compares with the
    # 50-connection rows (warmed up: there 50 of about 20,000 are left under
    # way).  Both figures are reported.  max_connections is what the
    # open-files limit leaves beside the 10,000 client connections, so calls
    # beyond it wait in the gateway instead of failing on EMFILE, and at
    # most 3,000: one process serves 1,300 req/s at best, so no more than
    # that many 1 s calls need a connection at once, and a call waiting for
    # one holds less memory than a call on one (with 9,000 the peak RSS was
    # 264-295 MB, with 3,000 216-220 MB, at the same or better req/s).
    Row(
        "gw-10k-slow",
        "gateway",
        "gateway, httpjson, 10,000 connections, 1 s function; each request waits about"
        " 10,000/throughput s (closed loop), so wrk's timeout is 14 s; max_connections"
        " fits the open-files limit",
        10_000,
        threads=2,
        function="slow-httpjson",
        duration=15.0,
        quick_duration=15.0,
        timeout=14.0,
        warmup=False,
        fd_bound=True,
        connection_cap=3_000,
        steady_window=(4.0, 14.0),
    ),
)
ROW_NAMES = tuple(row.name for row in ROWS)


@dataclass
class Result:
    """
    What one row measured; ``skipped`` holds the reason when it did not run.
    """

    name: str
    description: str
    connections: int
    threads: int
    duration: float
    skipped: str | None = None
    failed: str | None = None
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_ms_per_request: float | None = None
    cpu_seconds: float = 0.0
    gc_ms_per_request: float | None = None
    """Of that CPU, the garbage collector's (Python servers only)."""
    peak_rss_mb: float = 0.0
    processes: int = 0
    others_cpu_pct: float = 0.0
    load_ms_per_request: float | None = None
    """CPU of the load's side (wrk, the fake, this script) per request."""
    errors: int = 0
    error_detail: dict[str, int] = field(default_factory=dict)
    wrk_output: str = ""
    rounds: list[tuple[float, float | None]] = field(default_factory=list)
    """(req/s, CPU ms/request) of every round of this row, with --rounds."""
    steady_cpu_ms_per_request: float | None = None
    """CPU per request in the row's steady window, for rows that have one."""
    steady_rps: float | None = None
    """Requests per second the fake received in that window."""


# --------------------------------------------------------------------------
# Tools: wrk, nginx and its echo module


def apt_candidate(package: str) -> bool:
    """
    Whether apt has a version of ``package`` to install.
    """
    out = subprocess.run(
        ["apt-cache", "policy", package], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    return match is not None and match.group(1) != "(none)"


def apt_install(packages: Sequence[str]) -> None:
    if shutil.which("apt-get") is None:
        raise BenchError(f"missing {' '.join(packages)} and there is no apt-get to install them")
    if not all(apt_candidate(p) for p in packages):
        print("== apt-get update", flush=True)
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
    missing = [p for p in packages if not apt_candidate(p)]
    if missing:
        raise BenchError(f"apt has no package {' '.join(missing)}")
    print(f"== apt-get install -y {' '.join(packages)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", *packages],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def nginx_modules_path(nginx: str) -> Path:
    out = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    match = re.search(r"--modules-path=(\S+)", out)
    return Path(match.group(1) if match else "/usr/lib/nginx/modules")


@dataclass(frozen=True)
class Tools:
    wrk: str
    nginx: str
    echo_module: Path | None  # None: compiled in


def find_tools(install: bool) -> Tools:
    """
    wrk, nginx and the echo module, installed with apt when allowed.
    """
    wanted = [p for p, exe in (("wrk", "wrk"), ("nginx-light", "nginx")) if not _which(exe)]
    if wanted:
        if not install:
            raise BenchError(f"missing {' '.join(wanted)} (run without --no-install)")
        apt_install(wanted)
    wrk, nginx = _which("wrk"), _which("nginx")
    if wrk is None or nginx is None:
        raise BenchError("wrk or nginx is still missing after installing")
    if _echo_compiled_in(nginx):
        return Tools(wrk, nginx, None)
    module = nginx_modules_path(nginx) / "ngx_http_echo_module.so"
    if not module.exists():
        if not install:
            raise BenchError(f"missing {module} (libnginx-mod-http-echo)")
        apt_install(["libnginx-mod-http-echo"])
    if not module.exists():
        raise BenchError(f"missing {module} after installing libnginx-mod-http-echo")
    return Tools(wrk, nginx, module)


def _which(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/sbin") if (p := Path(d, name)).exists()), None
    )


def _echo_compiled_in(nginx: str) -> bool:
    out = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False).stderr
    return re.search(r"--add-module=\S*echo", out) is not None


# --------------------------------------------------------------------------
# Processes: started in their own groups, all killed at the end


class Processes:
    """
    Every subprocess the bench starts, so that all of them can be stopped.
    """

    def __init__(self) -> None:
        self._running: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        out = open(log, "wb")  # noqa: SIM115 - closed in stop_all
        self._logs.append(out)
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        self._running.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """
        SIGTERM to the process group, then SIGKILL to whatever is left.
        """
        family = process_tree(process.pid) if process.poll() is None else []
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        for pid in family:
            # A descendant that left the group (its own session) still goes.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if process in self._running:
            self._running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self._running)):
            with contextlib.suppress(Exception):
                self.stop(process, grace=5.0)
        for out in self._logs:
            out.close()


# --------------------------------------------------------------------------
# /proc: CPU time and peak RSS of a process tree


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """
    ``root`` and all its descendants.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_kb: int
    processes: int


def tree_usage(root: int) -> Usage:
    """
    utime+stime (all threads) and VmHWM, summed over the tree.
    """
    cpu, rss, count = 0, 0, 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        cpu += int(fields[11]) + int(fields[12])
        count += 1
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss += int(line.split()[1])
    return Usage(cpu / CLK_TCK, rss, count)


@dataclass(frozen=True)
class Snapshot:
    """
    CPU seconds so far: the server's tree, the fake's, this process and its
    reaped children (wrk), and the whole machine's busy time.
    """

    wall: float
    server: Usage
    fake_cpu: float
    bench_cpu: float
    machine_busy: float


def machine_busy() -> float:
    """
    Busy CPU seconds of the whole machine, all CPUs (from /proc/stat).

    Interrupt time is left out: on loopback it is mostly the bench's own
    traffic, and no process is charged for it.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + steal) / CLK_TCK


def snapshot(server_pid: int, fake_pid: int) -> Snapshot:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    bench = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    fake = 0.0 if fake_pid == server_pid else tree_usage(fake_pid).cpu_seconds
    return Snapshot(time.monotonic(), tree_usage(server_pid), fake, bench, machine_busy())


def others_cpu_pct(before: Snapshot, after: Snapshot) -> float:
    """
    The share of the machine's CPU that processes outside the bench used.

    Other work on the machine slows the rows down; above a few per cent the
    row's numbers are noisy.
    """
    ours = (
        after.server.cpu_seconds - before.server.cpu_seconds
        + after.fake_cpu - before.fake_cpu
        + after.bench_cpu - before.bench_cpu
    )  # fmt: skip
    others = max(0.0, after.machine_busy - before.machine_busy - ours)
    capacity = (os.cpu_count() or 1) * (after.wall - before.wall)
    return 100 * others / capacity if capacity > 0 else 0.0


def wait_for_quiet(limit: float, busy_pct: float = 10.0, quiet_for: int = 3) -> None:
    """
    Wait (up to ``limit`` seconds) for ``quiet_for`` idle seconds in a row.

    On a shared machine other work skews every row; between rows nothing of
    the bench's is busy, so any CPU used now is someone else's.
    """
    deadline = time.monotonic() + limit
    capacity = os.cpu_count() or 1
    quiet = 0
    while True:
        start = machine_busy()
        time.sleep(1.0)
        used = 100 * (machine_busy() - start) / capacity
        quiet = quiet + 1 if used < busy_pct else 0
        if quiet >= quiet_for:
            return
        if time.monotonic() >= deadline:
            print(f"   the machine is still busy ({used:.0f}% CPU); measuring anyway", flush=True)
            return


def settle(root: int, limit: float = 5.0) -> Usage:
    """
    The tree's usage once it has stopped using CPU (work the run caused).
    """
    deadline = time.monotonic() + limit
    last = tree_usage(root)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = tree_usage(root)
        if now.cpu_seconds - last.cpu_seconds < 0.02:
            return now
        last = now
    return last


# --------------------------------------------------------------------------
# Small helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"exited with {process.returncode}: {tail(log)}")
        with socket.socket() as s, contextlib.suppress(OSError):
            s.connect((HOST, port))
            return
        time.sleep(0.1)
    raise BenchError(f"not listening on {port} after {limit:.0f} s: {tail(log)}")


def tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def post(port: int, path: str, body: str = REQUEST_BODY, timeout: float = 10.0) -> Response:
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return Response(response.status, headers, data)
    finally:
        connection.close()


FD_WANTED = 65536
"""Open files the gateway may need: the shipped systemd unit's LimitNOFILE.

At 10,000 concurrent requests the gateway holds 10,000 client connections
and 10,000 to the fake Lambda, and keeps more in its pool."""


def raise_fd_limit() -> int:
    """
    Raise this process's open-file limit, which children inherit: to
    L{FD_WANTED} where allowed (root may raise the hard limit), else to the
    hard limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if hard < FD_WANTED:
        with contextlib.suppress(ValueError, OSError):
            ceiling = int(Path("/proc/sys/fs/nr_open").read_text())
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(FD_WANTED, ceiling),) * 2)
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def git_rev() -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "norev"
    if git("status", "--porcelain", "--untracked-files=no", "--", "src", "twisted"):
        rev += "-dirty"
    return rev


def gateway_rev() -> str:
    """
    The last commit that changed the gateway's code (src/, twisted/).
    """
    out = subprocess.run(
        ["git", "-C", str(REPO), "log", "-1", "--format=%h %s", "--", "src", "twisted"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return out.stdout.strip() or "?"


# --------------------------------------------------------------------------
# The fake Lambda


def nginx_conf(tmp: Path, port: int, tools: Tools, fd_limit: int) -> str:
    """
    nginx answering the Invoke API, every path under ``tmp``.

    ``fast-<format>`` answers at once, ``slow-<format>`` after 1 s (echo_sleep,
    then the same reply); any other function is Lambda's 404.
    """
    locations = []
    for fmt, reply in REPLIES.items():
        suffix = FUNCTION_SUFFIX[fmt]
        quoted = reply.replace("\\", "\\\\").replace("'", "\\'")
        locations.append(
            f"""
        location = {INVOKE_PATH.format(name="fast-" + suffix)} {{ return 200 '{quoted}'; }}
        location = {INVOKE_PATH.format(name="slow-" + suffix)} {{
            echo_sleep 1;
            echo_exec @reply-{suffix};
        }}
        location @reply-{suffix} {{ return 200 '{quoted}'; }}"""
        )
    load = f"load_module {tools.echo_module};" if tools.echo_module else ""
    not_found = (
        '{"Type":"User","message":"Function not found","__type":"ResourceNotFoundException"}'
    )
    return f"""{load}
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {fd_limit};
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections {fd_limit - 100}; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    default_type application/json;
    geo $dollar {{ default "$"; }}
    server {{
        listen {HOST}:{port} backlog={BACKLOG};
        add_header x-amzn-RequestId $request_id always;
        add_header X-Amz-Executed-Version ${{dollar}}LATEST always;
        {"".join(locations)}
        location = {STATUS_PATH} {{ stub_status; }}
        location / {{
            add_header x-amzn-ErrorType ResourceNotFoundException always;
            return 404 '{not_found}';
        }}
    }}
}}
"""


def start_fake(procs: Processes, tmp: Path, tools: Tools, fd_limit: int) -> tuple[int, int]:
    """
    Start the fake and check it answers like Lambda; its (pid, port).
    """
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(nginx_conf(tmp, port, tools, fd_limit))
    log = tmp / "nginx.out"
    argv = [tools.nginx, "-p", str(tmp), "-c", str(conf), "-e", str(tmp / "nginx-error.log")]
    process = procs.start(argv, log)
    wait_listening(port, process, log, 10)
    for fmt, reply in REPLIES.items():
        name = "fast-" + FUNCTION_SUFFIX[fmt]
        response = post(port, INVOKE_PATH.format(name=name))
        problems = []
        if response.status != 200:
            problems.append(f"status {response.status}")
        if response.headers.get("content-type") != "application/json":
            problems.append(f"Content-Type {response.headers.get('content-type')!r}")
        if not response.headers.get("x-amzn-requestid"):
            problems.append("no x-amzn-RequestId")
        if response.body != reply.encode():
            problems.append(f"body {response.body[:80]!r}")
        if problems:
            raise BenchError(f"the fake's reply for {name} is not Lambda-like: {problems}")
    return process.pid, port


# --------------------------------------------------------------------------
# The servers under test


FD_RESERVE = 1000
"""Open files left for everything but client and Lambda connections (logs, the
listener, epoll, the thread pool's pipes), with room to spare."""

MAX_CONNECTIONS = 20_000


def max_connections(row: Row) -> int:
    """
    ``[aws] max_connections`` for ``row``: for an ``fd_bound`` row, what this
    process's open-files limit (which the gateway inherits) leaves beside the
    row's client connections and L{FD_RESERVE}, and at most its ``connection_cap``.
    """
    if not row.fd_bound:
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return row.connection_cap or MAX_CONNECTIONS
    cap = row.connection_cap if row.connection_cap is not None else MAX_CONNECTIONS
    return max(1, min(cap, soft - row.connections - FD_RESERVE))


def gateway_ini(row: Row, port: int, fake_port: int) -> str:
    workers = f"workers = {row.workers}\n" if row.workers != 1 else ""
    return f"""; written by bench/run.py for row {row.name}
[gateway]
listen = tcp:{port}:interface={HOST}:backlog={BACKLOG}
max_in_flight = 20000
{workers}
[aws]
region = us-east-1
max_connections = {max_connections(row)}
access_key_id = AKIDBENCHMARKEXAMPLE
secret_access_key = bench/secret/not/a/real/key
endpoint_url = http://{HOST}:{fake_port}

[route:{GATEWAY_PREFIX}]
backend = aws
format = {row.format}
timeout = 30s
"""


def python_env(gc_dir: Path | None = None) -> dict[str, str]:
    """
    The environment for Python children: this checkout's code first; with
    C{gc_dir}, the collector's time recorded there (see L{GC_WATCH}).
    """
    paths = [str(REPO / "src"), str(REPO)]
    extra: dict[str, str] = {}
    if gc_dir is not None:
        gc_dir.mkdir(parents=True, exist_ok=True)
        paths.insert(0, str(GC_WATCH))
        extra["LAMBDAGW_BENCH_GC_DIR"] = str(gc_dir)
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(paths),
        "PYTHONDONTWRITEBYTECODE": "1",
        **extra,
    }


GC_WATCH = BENCH_DIR / "gcwatch"
"""Holds the sitecustomize that times a server's garbage collections."""


def gc_seconds(gc_dir: Path, start: float, end: float) -> float | None:
    """
    CPU seconds of the collections that started between C{start} and C{end}
    (wall clock) in every process that wrote to C{gc_dir}; None if none did.
    """
    files = sorted(gc_dir.glob("gc-*.json"))
    if not files:
        return None
    total = 0.0
    for path in files:
        with contextlib.suppress(OSError, ValueError):
            for began, cpu, _generation in json.loads(path.read_text()):
                if start <= began <= end:
                    total += cpu
    return total


def twistd_argv() -> list[str]:
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


@functools.cache
def registered_formats() -> list[str]:
    """
    The event formats this checkout's gateway has, asked of a child Python.
    """
    code = "from twisted_lambdagw.core.formats import FORMATS; print(' '.join(FORMATS))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=python_env(), check=False
    )
    if out.returncode != 0:
        raise BenchError(f"cannot import twisted_lambdagw: {out.stderr.strip()[-300:]}")
    return out.stdout.split()


def gc_dir(tmp: Path, row: Row) -> Path:
    """
    Where the server of C{row} writes its garbage collections.
    """
    return tmp / f"gc-{row.name}"


@dataclass
class Server:
    """
    A started server under test.
    """

    process: subprocess.Popen[bytes]
    port: int
    path: str


def start_server(
    row: Row,
    procs: Processes,
    tmp: Path,
    fake_port: int,
    fake_pid: int,
    profile_to: Path | None,
) -> Server | int:
    """
    The server for ``row``; for a fake row, the fake's pid (already running).
    """
    if row.kind == "fake":
        return fake_pid
    port = free_port()
    log = tmp / f"{row.name}.out"
    if row.kind == "rproxy":
        argv = [sys.executable, str(BENCH_DIR / "rproxy.py"), str(port), str(fake_port)]
        process = procs.start(argv, log, env=python_env(gc_dir(tmp, row)))
        wait_listening(port, process, log, 30)
        path = INVOKE_PATH.format(name=row.function)
        check_reply(port, path, row, expect_envelope=True)
        return Server(process, port, path)
    if row.kind.startswith("floor-"):
        mode = row.kind.removeprefix("floor-")
        argv = [sys.executable, str(BENCH_DIR / "floor.py"), mode, str(port), str(fake_port)]
        process = procs.start(argv, log, env=python_env(gc_dir(tmp, row)))
        wait_listening(port, process, log, 30)
        path = INVOKE_PATH.format(name=row.function)
        check_reply(port, path, row, expect_envelope=mode != "hello")
        return Server(process, port, path)

    if row.format not in registered_formats():
        raise NotAvailable(f"n/a ({row.format} format not implemented)")
    ini = tmp / f"{row.name}.ini"
    ini.write_text(gateway_ini(row, port, fake_port))
    argv = [*twistd_argv(), "-n", "--pidfile=", "-l", str(tmp / f"{row.name}.log")]
    if profile_to is not None:
        argv += ["--profiler=cprofile", f"--profile={profile_to}", "--savestats"]
    argv += ["lambdagw", "--config", str(ini)]
    process = procs.start(argv, log, env=python_env(gc_dir(tmp, row)), cwd=tmp)
    try:
        wait_listening(port, process, log, 60)
    except BenchError as e:
        if row.workers != 1 and "workers" in str(e):
            raise NotAvailable("n/a (workers not implemented)") from None
        raise BenchError(f"{row.name}: the gateway did not start: {e}") from None
    if row.workers != 1:
        # The workers may take a moment to appear; one process means none did.
        deadline = time.monotonic() + 10
        while tree_usage(process.pid).processes < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        if tree_usage(process.pid).processes < 2:
            procs.stop(process)
            raise NotAvailable("n/a (workers not implemented)")
    path = GATEWAY_PREFIX + row.function + "/"
    check_reply(port, path, row, expect_envelope=False)
    return Server(process, port, path)


def check_reply(port: int, path: str, row: Row, expect_envelope: bool) -> None:
    """
    One request before measuring: the row must measure successes, not errors.
    """
    response = post(port, path, timeout=30)
    expected = REPLIES[row.format].encode() if expect_envelope else b'{"ok":true}'
    if response.status != 200 or response.body != expected:
        raise BenchError(
            f"{row.name}: POST {path} answered {response.status} {response.body[:200]!r},"
            f" expected 200 {expected!r}"
        )


# --------------------------------------------------------------------------
# wrk

# wrk only counts a timeout when a late reply arrives; a request never
# answered is not counted at all.  So each thread counts the requests it sent
# (per second of sending) and the replies it got: at the end, the requests
# still unanswered beyond those sent in the last TIMEOUT seconds waited longer
# than the timeout (a lower bound, to the second).
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '@BODY@'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  sent = 0
  answered = 0
  sent_at = {}
  prepared = wrk.format()
end

function request()
  local now = os.time()
  sent = sent + 1
  sent_at[now] = (sent_at[now] or 0) + 1
  return prepared
end

function response(status, headers, body)
  answered = answered + 1
end

function done(summary, latency, requests)
  local cutoff = os.time() - @TIMEOUT@
  local outstanding, young = 0, 0
  for _, thread in ipairs(threads) do
    outstanding = outstanding + thread:get("sent") - thread:get("answered")
    for second, count in pairs(thread:get("sent_at")) do
      if second >= cutoff then
        young = young + count
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%.0f,"duration_us":%.0f,"connect":%.0f,"read":%.0f,'
    .. '"write":%.0f,"status":%.0f,"timeout":%.0f,"unanswered":%.0f,"p50_us":%.0f,'
    .. '"p99_us":%.0f,"max_us":%.0f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    math.max(0, outstanding - young),
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def wrk(
    tools: Tools,
    procs: Processes,
    tmp: Path,
    port: int,
    path: str,
    connections: int,
    threads: int,
    duration: float,
    timeout: float,
    label: str,
) -> tuple[dict[str, float], str]:
    """
    One bounded wrk run; its done() numbers and its text output.
    """
    script = tmp / f"post-{timeout:g}.lua"
    if not script.exists():
        lua = WRK_SCRIPT.replace("@BODY@", REQUEST_BODY).replace("@TIMEOUT@", f"{timeout:g}")
        script.write_text(lua)
    argv = [
        tools.wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        f"--timeout={timeout:g}s",
        "--latency",
        "-s",
        str(script),
        f"http://{HOST}:{port}{path}",
    ]
    log = tmp / f"wrk-{label}.out"
    process = procs.start(argv, log)
    try:
        process.wait(duration + timeout + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish: {tail(log)}") from None
    finally:
        procs.stop(process)
    text = log.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("BENCHJSON "):
            numbers: dict[str, float] = json.loads(line.removeprefix("BENCHJSON "))
            return numbers, text
    raise BenchError(f"wrk gave no summary (exit {process.returncode}): {tail(log)}")


# --------------------------------------------------------------------------
# Running rows


@dataclass(frozen=True)
class Settings:
    quick: bool
    tools: Tools
    tmp: Path
    fake_port: int
    fake_pid: int
    quiet_wait: float = 0.0

    def duration(self, row: Row) -> float:
        return row.quick_duration if self.quick else row.duration

    def warmup(self) -> float:
        return 1.0 if self.quick else 2.0


def run_row(
    row: Row,
    settings: Settings,
    procs: Processes,
    profile: str | None = None,
    profile_stem: Path | None = None,
) -> Result:
    duration = settings.duration(row)
    result = Result(row.name, row.description, row.connections, row.threads, duration)
    print(f"== {row.name}: {row.description}, -c{row.connections} -d{duration:g}s", flush=True)
    profile_to = None
    if profile == "cprofile" and profile_stem is not None and row.kind == "gateway":
        profile_to = profile_stem.with_suffix(".pstats")
    try:
        server = start_server(
            row, procs, settings.tmp, settings.fake_port, settings.fake_pid, profile_to
        )
    except NotAvailable as e:
        result.skipped = str(e)
        print(f"   {result.skipped}", flush=True)
        return result
    except BenchError as e:
        result.skipped = result.failed = f"FAILED: {e}"
        print(f"   {result.failed}", flush=True)
        return result
    if isinstance(server, int):
        pid, port = server, settings.fake_port
        path = INVOKE_PATH.format(name=row.function)
    else:
        pid, port, path = server.process.pid, server.port, server.path
    spy: subprocess.Popen[bytes] | None = None
    try:
        if settings.quiet_wait > 0:
            wait_for_quiet(settings.quiet_wait)  # the server is up and idle
        if row.warmup:
            wrk(settings.tools, procs, settings.tmp, port, path, row.connections,
                row.threads, settings.warmup(), row.timeout, row.name + "-warmup")  # fmt: skip
            settle(pid, limit=3)
        if profile in PY_SPY_FORMATS and profile_stem is not None and row.kind != "fake":
            spy = start_py_spy(procs, settings.tmp, pid, duration, profile_stem, profile)
        before = snapshot(pid, settings.fake_pid)
        window_start = time.time()
        load = functools.partial(wrk, settings.tools, procs, settings.tmp, port, path,
                                 row.connections, row.threads, duration, row.timeout,
                                 row.name)  # fmt: skip
        if row.steady_window is not None and row.kind == "gateway":
            (numbers, text), steady = steady_cpu(load, pid, settings.fake_port, row.steady_window)
            if steady is not None:
                result.steady_cpu_ms_per_request, result.steady_rps = steady
        else:
            numbers, text = load()
        settle(pid)
        after = snapshot(pid, settings.fake_pid)
        window_end = time.time()
        if spy is not None:
            finish_py_spy(procs, spy, duration)
            if profile == "py-spy-text" and profile_stem is not None:
                write_folded_summary(profile_stem.with_suffix(".folded"))
    finally:
        if not isinstance(server, int):
            procs.stop(server.process, grace=30 if profile_to else 10)
    fill(result, numbers, before, after)
    if not isinstance(server, int) and result.requests:
        # Written by the server as it exited (procs.stop above).
        collector = gc_seconds(gc_dir(settings.tmp, row), window_start, window_end)
        if collector is not None:
            result.gc_ms_per_request = 1000 * collector / result.requests
    result.wrk_output = "\n".join(
        line for line in text.splitlines() if not line.startswith("BENCHJSON")
    )
    if profile_to is not None:
        write_pstats_summary(profile_to)
    print(f"   {summary_line(result)}", flush=True)
    if result.errors:
        detail = ", ".join(f"{k} {v}" for k, v in result.error_detail.items() if v)
        print(f"   errors: {detail}", flush=True)
    return result


def fake_requests(port: int) -> int:
    """
    The requests the fake has received so far (nginx's stub_status), less this one.
    """
    url = f"http://{HOST}:{port}{STATUS_PATH}"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return int(lines[2].split()[2]) - 1


def steady_cpu(
    load: Callable[[], tuple[dict[str, float], str]],
    server_pid: int,
    fake_port: int,
    window: tuple[float, float],
) -> tuple[tuple[dict[str, float], str], tuple[float, float] | None]:
    """
    Run C{load} (wrk), and measure the server's CPU per request between
    C{window}'s two offsets (seconds after the load starts): its CPU in that
    window over the calls the fake received in it.  Returns what C{load}
    returned, and (CPU ms per request, requests per second), or None if no
    call came in the window.

    Every gateway request is one call to the fake, and in steady state
    calls are sent as fast as answers come back, so the window's calls are
    its requests, whatever was under way when it opened or closed.
    """
    start, end = window
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        began = time.monotonic()
        running = pool.submit(load)
        time.sleep(max(0.0, began + start - time.monotonic()))
        cpu_before, calls_before = tree_usage(server_pid).cpu_seconds, fake_requests(fake_port)
        opened = time.monotonic()
        time.sleep(max(0.0, began + end - time.monotonic()))
        cpu_after, calls_after = tree_usage(server_pid).cpu_seconds, fake_requests(fake_port)
        closed = time.monotonic()
        loaded = running.result()
    calls = calls_after - calls_before
    if calls <= 0:
        return loaded, None
    return loaded, (1000 * (cpu_after - cpu_before) / calls, calls / (closed - opened))


def fill(result: Result, numbers: Mapping[str, float], before: Snapshot, after: Snapshot) -> None:
    result.requests = int(numbers["requests"])
    result.seconds = numbers["duration_us"] / 1e6
    result.rps = result.requests / result.seconds if result.seconds else 0.0
    result.p50_ms = numbers["p50_us"] / 1000
    result.p99_ms = numbers["p99_us"] / 1000
    result.max_ms = numbers["max_us"] / 1000
    result.cpu_seconds = after.server.cpu_seconds - before.server.cpu_seconds
    if result.requests:
        result.cpu_ms_per_request = 1000 * result.cpu_seconds / result.requests
    result.peak_rss_mb = after.server.peak_rss_kb / 1024
    result.processes = after.server.processes
    result.others_cpu_pct = others_cpu_pct(before, after)
    load = after.fake_cpu - before.fake_cpu + after.bench_cpu - before.bench_cpu
    if result.requests:
        result.load_ms_per_request = 1000 * load / result.requests
    kinds = ("connect", "read", "write", "timeout", "unanswered", "status")
    detail = {k: int(numbers[k]) for k in kinds}
    result.error_detail = detail
    result.errors = sum(detail.values())


def summary_line(r: Result) -> str:
    return (
        f"{r.rps:,.0f} req/s  p50 {r.p50_ms:.2f} ms  p99 {r.p99_ms:.2f} ms"
        f"  CPU {fmt(r.cpu_ms_per_request, '.3f')} ms/req (GC {fmt(r.gc_ms_per_request, '.3f')})"
        f"  RSS {r.peak_rss_mb:.0f} MB"
        f"  errors {r.errors}  others' CPU {r.others_cpu_pct:.0f}%"
        + (
            ""
            if r.steady_cpu_ms_per_request is None
            else f"\n   steady window: {r.steady_rps or 0:,.0f} req/s"
            f"  CPU {r.steady_cpu_ms_per_request:.3f} ms/req"
        )
    )


# --------------------------------------------------------------------------
# Profiling


# py-spy's output format and file suffix for each --profiler that uses it.
PY_SPY_FORMATS = {"py-spy": ("flamegraph", ".svg"), "py-spy-text": ("raw", ".folded")}


def start_py_spy(
    procs: Processes, tmp: Path, pid: int, duration: float, stem: Path, profiler: str = "py-spy"
) -> subprocess.Popen[bytes]:
    py_spy = py_spy_path()
    assert py_spy is not None
    output, suffix = PY_SPY_FORMATS[profiler]
    argv = [
        py_spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "250",
        "--duration", str(int(duration)), "--format", output,
        "-o", str(stem.with_suffix(suffix)),
    ]  # fmt: skip
    if profiler == "py-spy-text":
        argv.append("--nonblocking")  # not paused to sample: costs it less CPU
    return procs.start(argv, tmp / "py-spy.out")


# Innermost frames of threads waiting for work: py-spy does not always see
# them as idle.
IDLE_FRAMES = frozenset({"Condition.wait (threading.py)"})


def folded_summary(lines: Sequence[str], top: int = 60) -> str:
    """
    The functions most often on CPU in py-spy's folded stacks: self and total.

    Each line is ``frame;frame;...;frame COUNT`` (outermost first); "self"
    counts the samples where the function was the innermost frame, "total"
    those where it was anywhere on the stack (once per sample).  Samples of
    idle pool threads are left out.
    """
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = idle = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if frames[-1] in IDLE_FRAMES:
            idle += count
            continue
        samples += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    out = [f"{samples} samples ({idle} of idle threads left out)"]
    for title, table in (("self", own), ("total", total)):
        out += ["", f"{title:>6}  %   function"]
        ranked = sorted(table.items(), key=lambda item: -item[1])[:top]
        out += [f"{n:6d} {100 * n / max(samples, 1):5.1f}  {f}" for f, n in ranked]
    return "\n".join(out) + "\n"


def write_folded_summary(path: Path) -> None:
    if not path.exists():
        print(f"   py-spy wrote no {path}", flush=True)
        return
    text_path = path.with_suffix(".txt")
    text_path.write_text(folded_summary(path.read_text(errors="replace").splitlines()))
    print(f"   profile: {path} and {text_path}", flush=True)


def finish_py_spy(procs: Processes, spy: subprocess.Popen[bytes], duration: float) -> None:
    try:
        spy.wait(duration + 30)
    except subprocess.TimeoutExpired:
        print("   py-spy did not finish", flush=True)
    procs.stop(spy)


def py_spy_path() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def write_pstats_summary(path: Path) -> None:
    import pstats

    if not path.exists():
        print(f"   no profile was written to {path}", flush=True)
        return
    text_path = path.with_suffix(".txt")
    with open(text_path, "w") as out:
        stats = pstats.Stats(str(path), stream=out)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(40)
    print(f"   profile: {path} and {text_path}", flush=True)


# --------------------------------------------------------------------------
# The report


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


@dataclass
class Check:
    what: str
    value: float | None
    shown: str
    target: str
    passed: bool | None  # None: not measured in this run


def _check(what: str, value: float | None, shown: str, target: str, limit: float | None,
           at_least: bool) -> Check:  # fmt: skip
    if value is None or limit is None:
        return Check(what, value, shown, target, None)
    return Check(what, value, shown, target, value >= limit if at_least else value <= limit)


def checks(results: Mapping[str, Result]) -> list[Check]:
    """
    Issue 9's ratios and targets, from the rows this run measured.
    """

    def measured(name: str) -> Result | None:
        r = results.get(name)
        return r if r is not None and r.skipped is None and r.requests else None

    gw, rp, v2 = measured("gw-httpjson-50"), measured("rproxy-50"), measured("gw-apigw-v2-50")
    w2, g1, f1 = measured("gw-workers2-50"), measured("gw-httpjson-1"), measured("fake-1")
    k = results.get("gw-10k-slow")
    k = k if k is not None and k.skipped is None else None
    floor = measured("floor-treq-50")
    floor_cpu = floor.cpu_ms_per_request if floor else None

    ratio = gw.rps / rp.rps if gw and rp else None
    cpu = gw.cpu_ms_per_request if gw else None
    own_cpu = cpu - floor_cpu if cpu is not None and floor_cpu is not None else None
    floor1 = measured("floor-treq-1")
    floor_added = floor1.p50_ms - f1.p50_ms if floor1 and f1 else None
    ratio_v2 = v2.rps / rp.rps if v2 and rp else None
    ratio_w = w2.rps / gw.rps if w2 and gw else None
    skipped_w = results.get("gw-workers2-50")
    shown_w = fmt(ratio_w, ".2f", "x")
    if skipped_w is not None and skipped_w.skipped:
        shown_w = skipped_w.skipped
    ceiling_w = workers_ceiling(w2, gw, os.cpu_count() or 1)
    load_w = w2.load_ms_per_request if w2 else None
    added = g1.p50_ms - f1.p50_ms if g1 and f1 else None
    # Nothing completed is no success, even with no error counted.
    errors = (float(k.errors) if k.requests else math.inf) if k else None
    shown_errors = "no request completed" if errors == math.inf else fmt(errors, ".0f")
    rss = k.peak_rss_mb if k else None
    ratio_k, shown_k = cpu_ratio(k.steady_cpu_ms_per_request if k else None, cpu)
    ratio_k_run, shown_k_run = cpu_ratio(k.cpu_ms_per_request if k else None, cpu)
    return [
        _check("httpjson@50 / ReverseProxyResource, req/s", ratio, fmt(ratio, ".2f", "x"),
               f">= {TARGET_RATIO_RPROXY}x", TARGET_RATIO_RPROXY, at_least=True),
        _check("httpjson@50 CPU per request", cpu, fmt(cpu, ".3f", " ms"),
               f"<= {TARGET_CPU_MS} ms", TARGET_CPU_MS, at_least=False),
        _check("Twisted's floor (floor-treq-50) CPU per request", floor_cpu,
               fmt(floor_cpu, ".3f", " ms"), "(information)", None, at_least=False),
        _check("httpjson@50 CPU per request above that floor", own_cpu,
               fmt(own_cpu, ".3f", " ms"), "(information)", None, at_least=False),
        _check("apigw-v2@50 / ReverseProxyResource, req/s", ratio_v2,
               fmt(ratio_v2, ".2f", "x"), "(information)", None, at_least=True),
        _check("workers = 2 / workers = 1, req/s", ratio_w, shown_w,
               f">= {TARGET_WORKERS_RATIO}x", TARGET_WORKERS_RATIO, at_least=True),
        _check("load's CPU per request at workers = 2 (wrk, the fake)", load_w,
               fmt(load_w, ".3f", " ms"), "(information)", None, at_least=False),
        _check("workers = 2 / workers = 1 at most, on these CPUs", ceiling_w,
               fmt(ceiling_w, ".2f", "x"), "(information)", None, at_least=True),
        _check("p50 the gateway adds at 1 connection", added, fmt(added, ".3f", " ms"),
               f"<= {TARGET_ADDED_P50_MS} ms", TARGET_ADDED_P50_MS, at_least=False),
        _check("p50 Twisted's floor (floor-treq-1) adds at 1 connection", floor_added,
               fmt(floor_added, ".3f", " ms"), "(information)", None, at_least=False),
        _check("10k connections, 1 s function: errors", errors, shown_errors,
               "0", 0, at_least=False),
        _check("10k connections: peak RSS", rss, fmt(rss, ".0f", " MB"),
               f"<= {TARGET_10K_RSS_MB:.0f} MB", TARGET_10K_RSS_MB, at_least=False),
        _check("10k CPU/request (steady window) / 50-connection CPU/request", ratio_k, shown_k,
               f"<= {TARGET_10K_CPU_RATIO}x", TARGET_10K_CPU_RATIO, at_least=False),
        _check("10k CPU over the whole run / its answered requests, same ratio", ratio_k_run,
               shown_k_run, "(information)", None, at_least=False),
    ]  # fmt: skip


def cpu_ratio(cpu: float | None, base: float | None) -> tuple[float | None, str]:
    """
    C{cpu} over C{base} (CPU ms per request), and how the report shows it.
    """
    ratio = cpu / base if cpu is not None and base else None
    return ratio, f"{fmt(ratio, '.2f', 'x')} ({fmt(cpu, '.3f')} / {fmt(base, '.3f')} ms)"


def workers_ceiling(w2: Result | None, w1: Result | None, cpus: int) -> float | None:
    """
    The most workers = 2 can serve, as a ratio to one worker, on these CPUs.

    The workers share the machine's CPUs with the load (wrk and the fake):
    at best every CPU is busy, with each request costing the workers' CPU
    per request plus the load's, so at most C{cpus / (workers + load)}
    requests a second.  One worker is bound by its one CPU instead.  A
    gateway that costs less per request gets closer to this bound, and the
    bound itself falls as the load's share grows.
    """
    if w2 is None or w1 is None or not w1.rps:
        return None
    if w2.cpu_ms_per_request is None or w2.load_ms_per_request is None:
        return None
    per_request = w2.cpu_ms_per_request + w2.load_ms_per_request
    return cpus * 1000 / per_request / w1.rps if per_request else None


def verdict(check: Check) -> str:
    return {True: "PASS", False: "FAIL", None: "-"}[check.passed]


NOISY_PCT = 10.0
QUICK_NOTE = " - QUICK (3 s runs, 15 s for the 10k row): for comparing, not for the issue"


def render(results: Sequence[Result], meta: Mapping[str, Any], gateway_config: str) -> str:
    lines = [
        f"# Benchmark {meta['date']} at {meta['git_rev']}",
        "",
        f"Gateway code as of {meta['gateway_rev']}.",
        "",
        f"`{meta['command']}` on {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['kernel']},"
        f" Python {meta['python']} ({meta['interpreter']}), Twisted {meta['twisted']},"
        f" {meta['wrk']}, {meta['nginx']};"
        f" open files limit {meta['fd_limit']}{QUICK_NOTE if meta['quick'] else ''}.",
        "",
        "CPU and RSS are the server under test's (the fake's own for the fake rows), summed"
        " over its process tree; CPU per request is its utime+stime over the measured run"
        " divided by the requests wrk completed. Errors are wrk's socket errors (connect, read,"
        " write), replies later than wrk's timeout, requests still unanswered past the timeout"
        " when the run ended, and replies with status ≥ 400. Others' CPU is the share of the"
        " machine's CPU used during the run by processes outside the bench (the server, the"
        " fake, wrk): above a few per cent, that row is noisy. GC is the part of the CPU"
        " per request that a Python server spent in its garbage collector (timed by"
        " bench/gcwatch).",
        "",
        "| row | conns | wrk threads | req/s | p50 ms | p99 ms | CPU ms/req | GC ms/req"
        " | peak RSS MB | errors | others' CPU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.name} | {r.connections} | {r.threads} | {r.skipped} ||||||||")
            continue
        detail = ", ".join(f"{k} {v}" for k, v in r.error_detail.items() if v)
        errors = f"{r.errors}" + (f" ({detail})" if detail else "")
        lines.append(
            f"| {r.name} | {r.connections} | {r.threads} | {r.rps:,.0f} | {r.p50_ms:.2f}"
            f" | {r.p99_ms:.2f} | {fmt(r.cpu_ms_per_request, '.3f')}"
            f" | {fmt(r.gc_ms_per_request, '.3f')} | {r.peak_rss_mb:.0f}"
            f" | {errors} | {r.others_cpu_pct:.0f}% |"
        )
    noisy = [r.name for r in results if not r.skipped and r.others_cpu_pct > NOISY_PCT]
    if noisy:
        lines += [
            "",
            f"Other processes used more than {NOISY_PCT:.0f}% of the machine during"
            f" {', '.join(noisy)}: their req/s and latencies understate the server, and their"
            " CPU per request is less sure. Run again on an idle machine (or with --quiet-wait).",
        ]
    rounds = [r for r in results if len(r.rounds) > 1]
    if rounds:
        lines += [
            "",
            f"Each row ran {len(rounds[0].rounds)} times in turn; the table shows its median"
            " round by req/s. Every round (req/s, CPU ms/request):",
            "",
            *(
                f"- `{r.name}`: "
                + "; ".join(f"{rps:,.0f}, {fmt(cpu, '.3f')}" for rps, cpu in r.rounds)
                for r in rounds
            ),
        ]
    lines += ["", "| measure | value | target | |", "|---|--:|--:|---|"]
    for c in checks({r.name: r for r in results}):
        lines.append(f"| {c.what} | {c.shown} | {c.target} | {verdict(c)} |")
    lines += [
        "",
        "Rows:",
        "",
        *(f"- `{r.name}`: {r.description}." for r in results),
        "",
        "The gateway's config (port numbers vary by run):",
        "",
        "```ini",
        gateway_config.strip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def interpreter() -> str:
    """
    Which CPython build runs the Python rows.  Two builds of one version differ
    here by about a fifth in CPU per request (Debian's, with profile-guided and
    link-time optimisation and libpython linked into the executable, against
    pyenv's default, with neither and libpython shared), so a result names its
    build.
    """
    executable = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    shared = "?"
    with contextlib.suppress(OSError):
        maps = Path("/proc/self/maps").read_text()
        shared = "libpython shared" if "libpython" in maps else "libpython linked in"
    return f"{executable}, {shared}"


def metadata(quick: bool, fd_limit: int, tools: Tools) -> dict[str, Any]:
    def first_line(argv: list[str]) -> str:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        text = (out.stdout + out.stderr).strip()
        return text.splitlines()[0] if text else "?"

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    twisted_version = subprocess.run(
        [sys.executable, "-c", "import twisted; print(twisted.__version__)"],
        capture_output=True, text=True, check=False, env=python_env(),
    ).stdout.strip()  # fmt: skip
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "git_rev": git_rev(),
        "gateway_rev": gateway_rev(),
        "command": " ".join(["python bench/run.py", *sys.argv[1:]]),
        "quick": quick,
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "interpreter": interpreter(),
        "twisted": twisted_version,
        "wrk": first_line([tools.wrk, "-v"]).split(" [")[0],
        "nginx": first_line([tools.nginx, "-v"]).removeprefix("nginx version: "),
        "fd_limit": fd_limit,
    }


def finite(value: float | None) -> float | None:
    """
    JSON has no infinity: an unmeasurable value is null.
    """
    return value if value is not None and math.isfinite(value) else None


def save(results: Sequence[Result], meta: Mapping[str, Any], config: str, stem: Path) -> None:
    stem.with_suffix(".md").write_text(render(results, meta, config))
    by_name = {r.name: r for r in results}
    document = {
        "meta": dict(meta),
        "rows": [asdict(r) for r in results],
        "checks": [
            asdict(c) | {"value": finite(c.value), "verdict": verdict(c)} for c in checks(by_name)
        ],
        "gateway_config": config,
    }
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n")


# --------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the gateway against nginx and ReverseProxyResource (issue 9).",
        epilog="Rows: " + ", ".join(ROW_NAMES),
    )
    parser.add_argument("--quick", action="store_true", help="3 s runs, 1 s warm-ups")
    parser.add_argument(
        "--only", action="append", choices=ROW_NAMES, metavar="NAME", help="run this row (repeat)"
    )
    parser.add_argument(
        "--profile",
        choices=[r.name for r in ROWS if r.kind != "fake"],
        metavar="NAME",
        help="run only this row, with the server under a profiler",
    )
    parser.add_argument(
        "--profiler",
        choices=(*PY_SPY_FORMATS, "cprofile"),
        help="py-spy flamegraph (default when py-spy is installed), py-spy-text (folded"
        " stacks and a summary of the top functions) or twistd's cProfile pstats",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each row, wait up to SECONDS for the machine to be idle (shared machines)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        metavar="N",
        help="run the rows N times in turn and report, for each row, its median round"
        " (a shared VM's speed drifts over minutes: this spreads the drift over every row)",
    )
    parser.add_argument("--list", action="store_true", help="print the rows and exit")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, configs)"
    )
    parser.add_argument(
        "--no-install", action="store_true", help="fail instead of apt-get installing tools"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.list:
        for row in ROWS:
            print(f"{row.name:16} -c{row.connections:<6} {row.description}")
        return 0
    names = [args.profile] if args.profile else args.only or list(ROW_NAMES)
    rows = [row for row in ROWS if row.name in names]
    profiler: str | None = None
    if args.profile:
        profiler = args.profiler or ("py-spy" if py_spy_path() else "cprofile")
        if profiler == "cprofile" and rows[0].kind != "gateway":
            raise BenchError("--profiler cprofile works on gateway rows only")
        if profiler in PY_SPY_FORMATS and py_spy_path() is None:
            raise BenchError("py-spy is not installed (pip install py-spy)")
    tag = "-quick" if args.quick else ""
    if args.rounds > 1:
        tag += f"-rounds{args.rounds}"
    if args.profile:
        tag += f"-profile-{args.profile}"
    elif args.only:
        tag += "-only"

    fd_limit = raise_fd_limit()
    tools = find_tools(install=not args.no_install)
    meta = metadata(args.quick, fd_limit, tools)
    procs = Processes()
    results: list[Result] = []
    RESULTS_DIR.mkdir(exist_ok=True)
    started = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
    stem = RESULTS_DIR / f"{started}-{meta['git_rev']}{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="lambdagw-bench-"))
    try:
        try:
            fake_pid, fake_port = start_fake(procs, tmp, tools, fd_limit)
            settings = Settings(args.quick, tools, tmp, fake_port, fake_pid, args.quiet_wait)
            rounds: dict[str, list[Result]] = {row.name: [] for row in rows}
            for _ in range(max(1, args.rounds)):
                for row in rows:
                    rounds[row.name].append(run_row(row, settings, procs, profiler, stem))
            results.extend(median_round(rounds[row.name]) for row in rows)
        finally:
            procs.stop_all()
    finally:
        if args.keep:
            print(f"logs and configs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    config = gateway_ini(next(r for r in ROWS if r.name == "gw-httpjson-50"), 0, 0)
    save(results, meta, config, stem)
    print()
    print(stem.with_suffix(".md").read_text())
    print(f"written to {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")
    if profiler == "py-spy":
        print(f"flamegraph: {stem.with_suffix('.svg')}")
    return 1 if any(r.failed for r in results) else 0


def median_round(results: Sequence[Result]) -> Result:
    """
    The round of one row with the median req/s (the lower middle one of an
    even count), carrying every round's req/s and CPU per request with it.
    """
    measured = [r for r in results if not r.skipped and not r.failed and r.requests]
    if not measured:
        return results[-1]
    chosen = sorted(measured, key=lambda r: r.rps)[(len(measured) - 1) // 2]
    chosen.rounds = [(r.rps, r.cpu_ms_per_request) for r in results]
    return chosen


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_exit() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    with _signals_exit():
        try:
            sys.exit(main(sys.argv[1:]))
        except BenchError as e:
            sys.exit(f"bench: {e}")
