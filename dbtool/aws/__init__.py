"""AWS: botocore clients built from the project's configuration, the RDS security group rule, the public IP.

botocore is imported inside functions only, so nothing that does not talk to AWS pays for it.
"""
