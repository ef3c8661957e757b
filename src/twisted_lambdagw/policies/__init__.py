"""
The per-route policy chain: authorization, CORS, limits and admission.
"""
