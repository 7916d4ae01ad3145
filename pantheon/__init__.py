"""Pantheon: the data backbone of a Smart City Digital Twin."""

__version__ = "0.1.0"
