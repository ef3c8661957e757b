"""
The benchmark's no-op handler; it reports its own run time in nanoseconds.
"""

import time


def handler(event, context):
    started = time.perf_counter_ns()
    result = {"handler_ns": 0}
    result["handler_ns"] = time.perf_counter_ns() - started
    return result
