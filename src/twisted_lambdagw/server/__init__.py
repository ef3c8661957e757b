"""
The twisted.web glue: the Site and its HTTP/1.1 channel, the request, the
resource that runs a route's policy chain, invokes and writes the reply once,
and the streaming relay.
"""
