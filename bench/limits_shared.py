"""
Requests per second of two gateways sharing one Redis limits store, against
the same two gateways with no limits, in one run.

    .venv/bin/python bench/limits_shared.py [--duration 5] [--connections 25]

It reuses C{bench/run.py}'s fake Lambda (nginx answering the Invoke API
instantly), starts its own C{redis-server} on a free loopback port, then for
each mode starts two C{twistd lambdagw} processes on 127.0.0.1 and runs one
bounded C{wrk} against each at the same time.  The limit is far above the
load (every request is checked, none refused): what is measured is the cost
of the shared check.  Everything listens on 127.0.0.1 and is stopped at
the end, however the run ends.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import (  # type: ignore[import-not-found]
    GATEWAY_PREFIX,
    HOST,
    BenchError,
    Processes,
    find_tools,
    free_port,
    python_env,
    raise_fd_limit,
    start_fake,
    twistd_argv,
    wait_listening,
    wrk,
)

MODES = {
    "none": "",
    "redis": "rate_limit = 1000000/s\nrate_burst = 100000000\nrate_key = client\n",
}


def gateway_ini(port: int, fake_port: int, redis_port: int, limits: str) -> str:
    return f"""; written by bench/limits_shared.py
[gateway]
listen = tcp:{port}:interface={HOST}
max_in_flight = 20000
limits_store = redis://{HOST}:{redis_port}/0

[aws]
region = us-east-1
access_key_id = AKIDBENCHMARKEXAMPLE
secret_access_key = bench/secret/not/a/real/key
endpoint_url = http://{HOST}:{fake_port}

[route:{GATEWAY_PREFIX}]
format = httpjson
{limits}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=25)
    options = parser.parse_args()
    redis = shutil.which("redis-server")
    if redis is None:
        sys.exit("redis-server is not installed (apt-get install redis-server)")
    tools = find_tools(install=False)
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="limits-shared-"))
    results: dict[str, tuple[float, float]] = {}
    try:
        _, fake_port = start_fake(procs, tmp, tools, raise_fd_limit())
        redis_port = free_port()
        redis_argv = [redis, "--port", str(redis_port), "--bind", HOST, "--dir", str(tmp),
                      "--save", "", "--appendonly", "no"]  # fmt: skip
        redis_process = procs.start(redis_argv, tmp / "redis.out")
        wait_listening(redis_port, redis_process, tmp / "redis.out", 10)
        for mode, limits in MODES.items():
            ports = []
            gateways = []
            for i in range(2):
                port = free_port()
                ini = tmp / f"{mode}-{i}.ini"
                ini.write_text(gateway_ini(port, fake_port, redis_port, limits))
                argv = [*twistd_argv(), "-n", "--pidfile=", "-l", str(tmp / f"{mode}-{i}.log"),
                        "lambdagw", "--config", str(ini)]  # fmt: skip
                log = tmp / f"{mode}-{i}.out"
                process = procs.start(argv, log, env=python_env(), cwd=tmp)
                wait_listening(port, process, log, 60)
                ports.append(port)
                gateways.append(process)
            path = GATEWAY_PREFIX + "fast-httpjson/"
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                args = (options.connections, 1, options.duration, 10.0)
                runs = [
                    pool.submit(wrk, tools, procs, tmp, port, path, *args, f"{mode}-{i}")
                    for i, port in enumerate(ports)
                ]
                numbers = [run.result()[0] for run in runs]
            requests = sum(n["requests"] for n in numbers)
            seconds = max(n["duration_us"] for n in numbers) / 1e6
            errors = sum(
                n[k] for n in numbers for k in ("status", "connect", "read", "write", "timeout")
            )
            results[mode] = (requests / seconds, errors)
            for process in gateways:
                procs.stop(process)
            time.sleep(1)
    except BenchError as e:
        sys.exit(f"bench: {e}")
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"two gateways, {options.connections} connections each, {options.duration:g} s")
    print("| limits | requests/s (both) | errors |")
    print("|---|---|---|")
    for mode, (rate, errors) in results.items():
        print(f"| {mode} | {rate:.0f} | {errors:.0f} |")


if __name__ == "__main__":
    main()
