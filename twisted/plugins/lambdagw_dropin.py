"""
The twistd plugin for twisted_lambdagw.

Every plugin scan by any Twisted program imports this file, so it holds only a
lazy ServiceMaker: the gateway itself is imported when ``twistd lambdagw`` runs.
"""

from twisted.application.service import ServiceMaker

lambdagw = ServiceMaker(
    "Lambda gateway",
    "twisted_lambdagw.daemon.plugin",
    "An HTTP gateway that invokes AWS Lambda functions under URL prefixes.",
    "lambdagw",
)
