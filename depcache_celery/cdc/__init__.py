"""``depcache cdc``: PostgreSQL's committed row changes, read from a logical replication slot
(``pgoutput``), published to the bus as invalidation events the worker fans out.

See :mod:`.stream` for the loop and its delivery guarantee, :mod:`.changes` for what each change
invalidates under each ``REPLICA IDENTITY``, and the README's "Change data capture" section.
"""

from __future__ import annotations

from .stream import DEFAULT_PUBLICATION, DEFAULT_SLOT, Cdc, CdcConfig

__all__ = ["DEFAULT_PUBLICATION", "DEFAULT_SLOT", "Cdc", "CdcConfig"]
