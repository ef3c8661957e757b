"""
Instructions the gateway executes per request, counted by callgrind.

    python bench/instructions.py                   # 1000 requests over 50 connections
    python bench/instructions.py --requests 500 --connections 1
    python bench/instructions.py --tree /tmp/other-checkout   # another version's src/
    python bench/instructions.py --reactor lambdagw-epoll     # twistd --reactor ...

CPU time per request moves with the neighbours' load on a shared machine;
an instruction count does not, so this is the measure for a before/after
comparison of one change (it is not time: a cache miss costs no more
instructions than a hit).  The gateway runs under ``valgrind
--tool=callgrind`` against the bench's nginx fake Lambda; after 200 warm-up
requests the counters are zeroed (``callgrind_control -z``), then the
measured requests are sent from this process (keep-alive, each connection
sending its next request when the last is answered) and the counters dumped.
Startup under valgrind takes about 30 s; needs valgrind, wrk is not used.

    python bench/instructions.py --dump /tmp/gw.callgrind   # keep callgrind's file
    python bench/instructions.py --cprofile /tmp/gw.pstats  # where, by Python function

callgrind names only CPython's C functions (Python 3.11 has no perf map),
so ``--cprofile`` answers the other question, where in Python the requests
go: the gateway runs without valgrind, under cProfile switched on after the
warm-up and off after the measured requests (by two real-time signals), and
this prints the function calls per request and the functions with the most
time of their own.  cProfile's overhead per call inflates small functions:
read it for where the calls are, and count instructions for a before/after.
"""

from __future__ import annotations

import argparse
import os
import pstats
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py, beside this file

REQUEST = (
    b"POST /lambda/fast-httpjson/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
    % (len(run.REQUEST_BODY), run.REQUEST_BODY.encode())
)


def send(port: int, requests: int, connections: int) -> None:
    """
    Send C{requests} POSTs over C{connections} keep-alive connections; all must be 200.
    """
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, bytes] = {}
    sent = done = 0
    for _ in range(min(connections, requests)):
        s = socket.create_connection((run.HOST, port))
        s.setblocking(False)
        selector.register(s, selectors.EVENT_READ)
        buffers[s] = b""
        s.sendall(REQUEST)
        sent += 1
    while done < requests:
        events = selector.select(120)
        if not events:
            raise run.BenchError("no answer from the gateway in 120 s")
        for key, _ in events:
            s = key.fileobj
            assert isinstance(s, socket.socket)
            data = s.recv(65536)
            if not data:
                raise run.BenchError("the gateway closed a connection")
            buffers[s] += data
            while (end := buffers[s].find(b"\r\n\r\n")) >= 0:
                head = buffers[s][:end].lower()
                length = int(re.search(rb"content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                if len(buffers[s]) < end + 4 + length:
                    break
                if not head.startswith(b"http/1.1 200"):
                    raise run.BenchError(f"answered {head[:100]!r}")
                buffers[s] = buffers[s][end + 4 + length :]
                done += 1
                if sent < requests:
                    s.sendall(REQUEST)
                    sent += 1
    for s in buffers:
        s.close()


PROFILED_TWISTD = """
import cProfile, os, signal, sys
profile = cProfile.Profile()
signal.signal(signal.SIGRTMIN + 1, lambda *_: profile.enable())
def stop(*_):
    profile.disable()
    profile.dump_stats(os.environ["LAMBDAGW_PSTATS"])
signal.signal(signal.SIGRTMIN + 2, stop)
from twisted.scripts.twistd import run
sys.argv[0] = "twistd"
run()
"""
"""twistd, with cProfile switched on and off by signals (for --cprofile)."""


def print_profile(path: Path, requests: int, top: int) -> None:
    """
    Calls per request, and the functions with the most time of their own.
    """
    stats = pstats.Stats(str(path))
    print(f"{stats.total_calls / requests:.1f} function calls per request")  # type: ignore[attr-defined]
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tree", type=Path, default=run.REPO, help="checkout whose src/ to run")
    parser.add_argument("--dump", type=Path, help="copy callgrind's output file here")
    parser.add_argument(
        "--cprofile", type=Path, help="profile with cProfile instead, writing pstats here"
    )
    parser.add_argument(
        "--reactor", help="twistd's --reactor, e.g. lambdagw-epoll (default: Twisted's)"
    )
    parser.add_argument("--top", type=int, default=40, help="functions --cprofile prints")
    args = parser.parse_args(argv)
    tree = args.tree.resolve()
    fd_limit = run.raise_fd_limit()
    tools = run.find_tools(install=False)
    procs = run.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="lambdagw-instructions-"))
    try:
        _, fake_port = run.start_fake(procs, tmp, tools, fd_limit)
        port = run.free_port()
        row = next(r for r in run.ROWS if r.name == "gw-httpjson-50")
        ini = tmp / "gw.ini"
        ini.write_text(run.gateway_ini(row, port, fake_port))
        out = tmp / "callgrind.out"
        reactor = ["--reactor", args.reactor] if args.reactor else []
        twistd = ["-n", "--pidfile=", "-l", str(tmp / "gw.log"), *reactor]
        twistd += ["lambdagw", "--config", str(ini)]
        env = {**run.python_env(), "PYTHONPATH": f"{tree / 'src'}:{tree}"}
        if args.cprofile is not None:
            env["LAMBDAGW_PSTATS"] = str(args.cprofile.resolve())
            argv = [sys.executable, "-c", PROFILED_TWISTD, *twistd]
            process = procs.start(argv, tmp / "gw.out", env=env, cwd=tmp)
            run.wait_listening(port, process, tmp / "gw.out", 120)
            send(port, 200, args.connections)
            os.kill(process.pid, signal.SIGRTMIN + 1)
            send(port, args.requests, args.connections)
            os.kill(process.pid, signal.SIGRTMIN + 2)
            deadline = time.monotonic() + 30
            while not args.cprofile.exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1)  # (written by then; no partial read)
            print_profile(args.cprofile, args.requests, args.top)
            return 0
        argv = [
            "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            *run.twistd_argv(), *twistd,
        ]  # fmt: skip
        process = procs.start(argv, tmp / "valgrind.out", env=env, cwd=tmp)
        run.wait_listening(port, process, tmp / "valgrind.out", 600)
        send(port, 200, args.connections)
        subprocess.run(
            ["callgrind_control", "-z", str(process.pid)], check=True, capture_output=True
        )
        send(port, args.requests, args.connections)
        subprocess.run(
            ["callgrind_control", "-d", str(process.pid)], check=True, capture_output=True
        )
        time.sleep(1)
        dump = max(tmp.glob("callgrind.out*"), key=lambda p: p.stat().st_mtime)
        if args.dump is not None:
            args.dump.write_bytes(dump.read_bytes())
        text = dump.read_text(errors="replace")
        found = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if found is None:
            raise run.BenchError(f"no totals in {dump}")
        total = int(found.group(1))
    finally:
        procs.stop_all()
    print(
        f"{tree.name}: {total / args.requests / 1e6:.3f} M instructions per request"
        f" ({args.requests} requests, {args.connections} connections)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
