"""
Rate limits (token buckets) and quotas (fixed windows) per route, counted
in this process or in a shared Redis server.
"""
