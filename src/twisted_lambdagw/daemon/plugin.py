"""
What the ``lambdagw`` twistd plugin loads: the command-line options and the service.

L{twisted.application.service.ServiceMaker} takes C{Options} and
C{makeService} from one module; this is that module, so that the options
twistd and twist parse print a config error as one line and exit (see
L{CommandLineOptions}), while L{twisted_lambdagw.daemon.tap.Options} raises a
UsageError for programs that parse options themselves.
"""

from .tap import CommandLineOptions as Options
from .tap import makeService

__all__ = ["Options", "makeService"]
