"""
The pure core: config, routing, event formats, records and errors.

Nothing here imports Twisted (a test proves it): every part can be read,
tested and reasoned about without a reactor.
"""
