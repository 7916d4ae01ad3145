"""Ingestion: validate, normalise, name and store uploaded data."""
