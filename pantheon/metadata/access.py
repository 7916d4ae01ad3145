"""Who may read data: the one rule for what counts as RESTRICTED.

Buckets, Kafka topics and the mesh policy all ask `is_restricted`. Only the
open levels (PUBLIC, INTERNAL, and UNSPECIFIED, which the services store as
INTERNAL) are readable without the restricted grant; RESTRICTED, or any
level added to the proto later, is not, so an unknown level fails closed.
"""

from __future__ import annotations

from pantheon_api.metadata.v1 import metadata_pb2 as md

_OPEN = frozenset({md.CLASSIFICATION_UNSPECIFIED, md.CLASSIFICATION_PUBLIC, md.CLASSIFICATION_INTERNAL})


def is_restricted(classification: int) -> bool:
    """Whether data of this classification needs the restricted grant."""
    return classification not in _OPEN
