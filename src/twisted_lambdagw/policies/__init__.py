"""
The per-route policy chain: what a request must pass before its function is
invoked (CORS, limits, authorization, admission).
"""
