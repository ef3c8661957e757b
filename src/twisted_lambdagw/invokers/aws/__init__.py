"""
The AWS backend: SigV4 signing, credentials, endpoints, the HTTP/1.1 agent,
Invoke errors and response streams.
"""
