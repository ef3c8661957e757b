"""
The per-route policy chain: CORS, limits, authorization, admission.
"""
