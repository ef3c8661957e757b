"""
Authorizers, as API Gateway HTTP APIs have them: JWT and Lambda, steps of a route's chain.

L{twisted_lambdagw.core.authorizers} reads the C{[authorizer:NAME]}
sections; C{jwt} and C{jwks} check bearer tokens against an issuer's keys,
and C{tokens} keeps those verified; C{lambda_} asks a function; C{service}
builds them all for a gateway.
"""
