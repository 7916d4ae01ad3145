"""The local development stack: a real Kafka broker and a real MinIO server on loopback.

`python -m pantheon.devstack up|down|status|env` (wrapped by `scripts/stack`)
provisions the binaries into a cache outside the repository, starts both
servers in the background with TLS and generated credentials, and applies
topics, ACLs, buckets, policies and users idempotently. Tests use
`pantheon.devstack.environment.environment()` to find the endpoints.
"""
