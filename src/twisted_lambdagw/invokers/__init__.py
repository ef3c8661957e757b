"""
The Invoker seam and its two backends: AWS Lambda's Invoke API (C{aws})
and functions run on this machine (C{local}).
"""
