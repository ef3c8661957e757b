"""
The local backend: functions run on this machine, behind the Lambda Runtime API.
"""

from .invoker import LocalInvoker
from .worker import LocalReactor

__all__ = ["LocalInvoker", "LocalReactor"]
