"""The ports the services need, one file per port, implemented by the adapters."""

from __future__ import annotations

from dicomweb_server.services.ports.blobs import BlobStore
from dicomweb_server.services.ports.consistency import ConsistencyIndex
from dicomweb_server.services.ports.retrieve import RetrieveIndex, StoredPixels
from dicomweb_server.services.ports.search import SearchIndex, SearchQuery, SearchResult
from dicomweb_server.services.ports.store import (
    AddOutcome,
    AddResult,
    JsonDict,
    NewInstance,
    PixelLayout,
    StoredInstance,
    StoreIndex,
)

__all__ = [
    "AddOutcome",
    "AddResult",
    "BlobStore",
    "ConsistencyIndex",
    "JsonDict",
    "NewInstance",
    "PixelLayout",
    "RetrieveIndex",
    "SearchIndex",
    "SearchQuery",
    "SearchResult",
    "StoreIndex",
    "StoredInstance",
    "StoredPixels",
]
