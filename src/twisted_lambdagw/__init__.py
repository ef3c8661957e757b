"""An HTTP gateway for AWS Lambda, on Twisted."""
