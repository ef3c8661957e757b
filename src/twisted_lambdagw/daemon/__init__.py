"""
The daemon: the twistd plugin's options and services, the lambdagw command,
worker processes, listeners and the process lifecycle.
"""
