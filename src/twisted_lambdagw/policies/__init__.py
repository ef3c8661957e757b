"""
The per-route policy chain: what runs between a route's match and its invoke.

L{build_chain} composes each route's L{Chain} from the config at startup;
the resource builds a L{Passage} per request, runs the chain, and answers
what it says (see L{twisted_lambdagw.policies.chain}).
"""

from .basic import Authenticator, BasicAuth
from .build import PolicyServices, build_chain, open_chain
from .chain import STAGES, Chain, Passage, Principal, Stage, Step, SyncStep
from .checks import NameCheck
from .inflight import Admission, InFlight

__all__ = [
    "STAGES",
    "Admission",
    "Authenticator",
    "BasicAuth",
    "Chain",
    "InFlight",
    "NameCheck",
    "Passage",
    "PolicyServices",
    "Principal",
    "Stage",
    "Step",
    "SyncStep",
    "build_chain",
    "open_chain",
]
