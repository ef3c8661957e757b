"""
The garbage collector's time in a server under test, for bench/run.py.

run.py puts this folder on the PYTHONPATH of the Python servers it measures
and names a folder in ``LAMBDAGW_BENCH_GC_DIR``; Python then imports this
module at startup (as ``sitecustomize``), and it records every collection:
its start on the wall clock, the CPU seconds it took and its generation.
When the process exits it writes them to ``gc-<pid>.json`` in that folder,
and run.py adds up those that started within the measured run.  Without the
variable it does nothing.  The gateway's own CPU figures include this time;
this only says how much of it the collector took.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import time
from typing import Any

_FOLDER = os.environ.get("LAMBDAGW_BENCH_GC_DIR")


def _install(folder: str) -> None:
    collections: list[tuple[float, float, int]] = []
    started = [0.0, 0.0]

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0], started[1] = time.time(), time.thread_time()
        else:
            collections.append(
                (started[0], time.thread_time() - started[1], int(info["generation"]))
            )

    def write() -> None:
        path = os.path.join(folder, f"gc-{os.getpid()}.json")
        with open(path, "w", encoding="utf-8") as out:
            json.dump(collections, out)

    gc.callbacks.append(record)
    atexit.register(write)


if _FOLDER:
    _install(_FOLDER)
