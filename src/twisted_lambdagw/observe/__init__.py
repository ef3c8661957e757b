"""
What the gateway tells its operators: the access log, metrics and logs.
"""
