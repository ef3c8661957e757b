"""
Authorizers, as API Gateway HTTP APIs have them: JWT and Lambda, steps of a route's chain.

C{config} reads the ``[authorizer:NAME]`` sections; C{jwt} and C{jwks} check
bearer tokens against an issuer's keys; C{lambda_} asks a function;
C{service} builds them all for a gateway.
"""
