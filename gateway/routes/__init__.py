"""One router per concern: uploads, downloads and search (the `/v1/objects` routes), records, health."""
