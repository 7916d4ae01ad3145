"""Per-format normalisers; `pantheon.ingest.normalise` picks one for an upload."""
