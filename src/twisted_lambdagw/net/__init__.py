"""
Transport helpers shared by the server and the AWS agent: header checks,
timer deadlines, and writes sent at once.
"""
