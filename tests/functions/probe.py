"""
A test function whose behaviour the event chooses.

Module state (``CALLS``) shows whether a worker was reused; ``action``
selects what the handler does: echo (default), raise, sleep, exit, print.
"""

import json
import os
import time
from typing import Any

CALLS = 0
ENV_KEYS = (
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "PROBE_SETTING",
    "_X_AMZN_TRACE_ID",
)


class ProbeError(Exception):
    pass


def handler(event: Any, context: Any) -> object:
    global CALLS
    CALLS += 1
    action = event.get("action", "echo") if isinstance(event, dict) else "echo"
    if action == "raise":
        raise ProbeError(event.get("message", "probe failed"))
    if action == "sleep":
        print("sleeping", event["seconds"])
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "print":
        print(event["text"])
    return {
        "event": event,
        "calls": CALLS,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "env": {key: os.environ.get(key) for key in ENV_KEYS},
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "json": json.dumps(None),
    }
