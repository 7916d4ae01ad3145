"""The HTTPS REST edge of Pantheon (FastAPI): auth, limits, REST to gRPC."""
