"""
CORS for a route, answered by the gateway as API Gateway does.
"""
