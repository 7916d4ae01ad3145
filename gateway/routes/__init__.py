"""One router per resource: objects, records, health."""
