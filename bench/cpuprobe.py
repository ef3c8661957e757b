"""
CPU per request of one bench row, measured so that a busy machine matters less.

    python bench/cpuprobe.py gw-httpjson-50            # 12 s of load, 0.5 s windows
    python bench/cpuprobe.py gw-httpjson-50 --seconds 20 --window 0.25

bench/run.py divides the server's CPU over a whole run by the requests wrk
completed.  On a machine that other work shares, that figure goes up with
the others' load (two vCPUs are often one core's two hyperthreads, so a busy
neighbour slows every instruction).  This probe runs the same server, fake
and wrk, but cuts the run into short windows: for each it reads the server's
CPU time (schedstat, in nanoseconds, over all its threads) and the requests
the fake Lambda answered (nginx's stub_status).  Windows that others
disturbed cost more, never less, so the lowest windows and the median are
printed: compare the low figure between two versions of the code.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run  # bench/run.py, beside this file


def cpu_ns(pid: int) -> int:
    """
    Time on CPU of every thread of the process tree, in nanoseconds.
    """
    total = 0
    for member in run.process_tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{member}/task").iterdir():
                with contextlib.suppress(OSError):
                    total += int((task / "schedstat").read_text().split()[0])
    return total


def user_system(pid: int) -> tuple[float, float]:
    """
    User and system CPU seconds of the process tree (clock ticks).
    """
    user = system = 0
    for member in run.process_tree(pid):
        fields = run._stat_fields(member)
        if fields is not None:
            user += int(fields[11])
            system += int(fields[12])
    return user / run.CLK_TCK, system / run.CLK_TCK


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("row", choices=[r.name for r in run.ROWS if r.kind != "fake"])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--connections", type=int, default=0, help="instead of the row's")
    args = parser.parse_args(argv)
    row = next(r for r in run.ROWS if r.name == args.row)
    if args.connections:
        row = run.Row(**{**row.__dict__, "connections": args.connections})
    fd_limit = run.raise_fd_limit()
    tools = run.find_tools(install=False)
    procs = run.Processes()
    tmp = Path(tempfile.mkdtemp(prefix="lambdagw-probe-"))
    try:
        fake_pid, fake_port = run.start_fake(procs, tmp, tools, fd_limit)
        server = run.start_server(row, procs, tmp, fake_port, fake_pid, None)
        assert not isinstance(server, int)
        pid = server.process.pid
        run.wrk(tools, procs, tmp, server.port, server.path, row.connections, row.threads,
                2.0, row.timeout, "warmup")  # fmt: skip
        wrk_args = (tools, procs, tmp, server.port, server.path, row.connections, row.threads)
        seconds = int(args.seconds) + 2
        load = threading.Thread(target=run.wrk, args=(*wrk_args, seconds, row.timeout, "probe"))
        load.start()
        time.sleep(1.0)
        windows: list[tuple[float, int, float]] = []
        last_cpu, last_busy = cpu_ns(pid), run.machine_busy()
        last_count = run.fake_requests(fake_port)
        first_count, first_split = last_count, user_system(pid)
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            time.sleep(args.window)
            cpu, count, busy = cpu_ns(pid), run.fake_requests(fake_port), run.machine_busy()
            if count > last_count:
                windows.append(((cpu - last_cpu) / 1e6 / (count - last_count), count - last_count,
                                busy - last_busy))  # fmt: skip
            last_cpu, last_count, last_busy = cpu, count, busy
        user, system = (b - a for a, b in zip(first_split, user_system(pid), strict=True))
        load.join()
    finally:
        procs.stop_all()
    costs = sorted(w[0] for w in windows)
    requests = sum(w[1] for w in windows)
    rps = requests / (len(windows) * args.window) if windows else 0.0
    low = statistics.mean(costs[: max(1, len(costs) // 5)])
    served = last_count - first_count
    print(
        f"{row.name}: user {1000 * user / served:.3f} + system {1000 * system / served:.3f}"
        " ms/request over the whole run (clock ticks)"
    )
    print(
        f"{row.name}: {len(windows)} windows, {rps:,.0f} req/s; CPU ms/request:"
        f" low-fifth {low:.3f}  min {costs[0]:.3f}  median {statistics.median(costs):.3f}"
        f"  max {costs[-1]:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
