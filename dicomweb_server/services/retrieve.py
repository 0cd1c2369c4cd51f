"""Retrieve (WADO-RS, PS3.18 10.4): instances, metadata, frames and bulk data.

Nothing here opens an object to parse it: instances stream from the blob store, metadata is
the JSON kept at ingest, and frames and bulk data are byte ranges found at ingest.

The retrieval plan is decided here too: which transfer syntax each instance is sent in, and
whether frames are read as stored or transcoded (PS3.18 8.7.3.4, `dicom/media_types.py`);
the web layer writes the parts out under its own URLs and headers.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dicomweb_server.dicom import numbers, uids
from dicomweb_server.dicom.deidentify import Deidentifier, deidentify_object
from dicomweb_server.dicom.depth import MAX_DEPTH
from dicomweb_server.dicom.errors import InvalidNumber
from dicomweb_server.dicom.frames import Ranges
from dicomweb_server.dicom.media_types import (
    OCTET_STREAM,
    BytesChoice,
    choose_bytes,
    choose_instance_syntax,
    matches,
)
from dicomweb_server.dicom.scan import PIXEL_DATA
from dicomweb_server.services.context import DOWNLOAD, READ, Caller, StudyScope
from dicomweb_server.services.errors import InvalidRequest, NotAcceptable, NotFound, not_stored
from dicomweb_server.services.pixels import PixelReader
from dicomweb_server.services.ports import (
    BlobStore,
    RetrieveIndex,
    StoredInstance,
    StoredPixels,
)

_BULK_PATH = re.compile(rf"[0-9A-F]{{8}}(/[0-9]{{1,9}}/[0-9A-F]{{8}}){{0,{MAX_DEPTH}}}", re.ASCII)


# Copies of the decoded pixels a whole-object transcode holds at its peak until its response
# is sent: the decoded array, Pixel Data re-encoded, the object written, the bytes returned
# and what the connection buffers (measured 3.4 to 5.3 times for a 100 MiB object).
TRANSCODE_COPIES = 6


@dataclass(frozen=True)
class ByteParts:
    """Parts of a multipart response, each a list of byte ranges of one stored object."""

    pixels: StoredPixels
    parts: list[Ranges]
    # The transfer syntax the bytes are encoded in (native pixel data: Explicit VR LE).
    transfer_syntax_uid: str
    # Frame numbers when the parts are frames of Pixel Data (they may be transcoded).
    frame_numbers: list[int] | None = None

    @property
    def instance(self) -> StoredInstance:
        return self.pixels.instance


@dataclass(frozen=True)
class Part:
    """One part of a response: its length, its bytes in chunks, and (when it is read in place)
    any slice of them, for a Range request."""

    length: int
    chunks: Callable[[], Iterable[bytes]]
    read_slice: Callable[[int, int], Iterable[bytes]] | None = None
    # The bytes if storage can hand them over without waiting (RetrieveService.cached),
    # else None; None here: always read with `chunks`.
    cached: Callable[[], bytes | None] | None = None

    @classmethod
    def held(cls, data: bytes) -> Part:
        return cls(len(data), lambda: (data,), cached=lambda: data)


class TextCache:
    """Texts by key, least recently used dropped first past `max_chars` in all; thread-safe.
    For values that never change under their key (a stored copy's DICOM JSON)."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()
        # Texts found and not found since the process started (the metrics).
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self._lock:
            for key in keys:
                text = self._texts.get(key)
                if text is not None:
                    self._texts.move_to_end(key)
                    found[key] = text
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        return found

    def put_many(self, texts: dict[str, str]) -> None:
        with self._lock:
            for key, text in texts.items():
                if len(text) > self.max_chars or key in self._texts:
                    continue
                self._texts[key] = text
                self._chars += len(text)
            while self._chars > self.max_chars and self._texts:
                _, dropped = self._texts.popitem(last=False)
                self._chars -= len(dropped)


@dataclass(frozen=True)
class Metadata:
    """The metadata of a scope: the stored copies' blob keys, and their DICOM JSON texts."""

    blob_keys: list[str]
    texts: list[str]


@dataclass(frozen=True)
class BytesPlan:
    """How frames or bulk data are sent: the part media type and transfer syntax chosen, in
    one part or multipart, read as stored or transcoded."""

    media_type: str
    transfer_syntax: str
    multipart: bool
    as_stored: bool


def slice_ranges(ranges: Ranges, start: int, length: int) -> Ranges:
    """The byte ranges holding bytes [start, start + length) of the concatenation of `ranges`."""
    out: Ranges = []
    position = 0
    for offset, size in ranges:
        lo, hi = max(start, position), min(start + length, position + size)
        if lo < hi:
            out.append((offset + lo - position, hi - lo))
        position += size
    return out


def parse_frame_numbers(text: str) -> list[int]:
    """PS3.18 10.4.1.1.3: a comma-separated list of frame numbers, counted from 1, each once
    (PS3.18 8.3.5.1.6: a list without duplicates). So a list asks at most for every frame of
    the instance once: the response is bounded by the instance, never a multiple of it."""
    found = numbers.parse_integers(text, "frame number", minimum=1, maximum=2**31 - 1)
    seen: set[int] = set()
    for number in found:
        if number in seen:
            raise InvalidNumber(
                f"frame number {number} is listed more than once (PS3.18 8.3.5.1.6: no duplicates)"
            )
        seen.add(number)
    return found


class RetrieveService:
    def __init__(
        self,
        index: RetrieveIndex,
        blobs: BlobStore,
        pixels: PixelReader,
        anonymizer: Deidentifier | None = None,
        metadata_cache: TextCache | None = None,
    ) -> None:
        self._index = index
        self._blobs = blobs
        self.pixels = pixels
        self._anonymizer = anonymizer
        # Stored DICOM JSON by blob key (None: every metadata request reads the index).
        self.metadata_cache = metadata_cache

    def object_cost(self, pixels: StoredPixels, target: str, anonymize: bool) -> int:
        """Memory `object_bytes` holds at its peak (the object, parsed and written again when
        de-identified), checked against the per-response bound before any work."""
        cost = 0
        if target != pixels.instance.transfer_syntax_uid:
            cost = self.transcode_cost([pixels.instance], [target])
        if anonymize:
            cost += 3 * pixels.instance.size
        return cost

    def object_bytes(self, instance: StoredInstance, target: str, anonymize: bool) -> bytes:
        """One whole object in `target`, de-identified on the way out when asked
        (WADO-URI, PS3.18 9.5.1.2.2: the PS3.15 Basic Profile, as on ingest)."""
        if target == instance.transfer_syntax_uid:
            data = self.pixels.whole_object(instance)
        else:
            data = self.transcoded(instance, target)
        if anonymize:
            if self._anonymizer is None:
                raise NotAcceptable("this server is not configured to de-identify on retrieve")
            try:
                data = deidentify_object(data, self._anonymizer)
            except (ValueError, TypeError, KeyError) as exc:
                raise NotAcceptable(f"the object cannot be de-identified: {exc}") from exc
        return data

    def object_syntaxes(self, instance: StoredInstance, wanted: str | None) -> list[str]:
        """The transfer syntaxes to try, in order, for one whole object (WADO-URI): the one
        asked for when it can be produced, then the default (PS3.18 8.2.11: an object that
        cannot be sent in the syntax asked for is sent in the default one)."""
        if wanted in uids.NOT_ALLOWED_ON_THE_WEB:
            raise NotAcceptable(f"transfer syntax {wanted} is never used on the web (PS3.18 8.7.3)")
        stored = instance.transfer_syntax_uid
        default = choose_instance_syntax([None], stored)
        assert default is not None  # the stored syntax is always sendable as it is
        target = choose_instance_syntax([wanted], stored) or default
        return [target] if target == default else [target, default]

    def transcoded(self, instance: StoredInstance, target: str) -> bytes:
        """The instance as a PS3.10 object in `target` (PS3.18 8.7.3.4)."""
        return self.pixels.transcoded_object(instance, target)

    def transcode_cost(self, instances: list[StoredInstance], targets: list[str]) -> int:
        """Memory transcoding these instances to their targets holds at its peak (0 when none
        needs it), checked before any work: their decoded frames together are at most what
        one response may transcode (406 otherwise)."""
        todo = [
            self.instance_pixels(inst)
            for inst, target in zip(instances, targets, strict=True)
            if target != inst.transfer_syntax_uid
        ]
        decoded = sum(self.pixels.decoded_bytes(p) for p in todo)
        if decoded > self.pixels.max_transcode_bytes:
            raise NotAcceptable(
                f"{len(todo)} instance(s) decoding to {decoded} bytes would need transcoding; "
                f"this server transcodes at most {self.pixels.max_transcode_bytes} bytes per "
                "response: ask for transfer-syntax=* or retrieve fewer instances at once"
            )
        cost = sum(p.instance.size for p in todo) + TRANSCODE_COPIES * decoded
        if cost > self.pixels.budget.total_bytes:
            raise NotAcceptable(
                f"transcoding {len(todo)} instance(s) would take {cost} bytes of memory, more "
                "than this server gives one response: ask for transfer-syntax=* or retrieve "
                "fewer instances at once"
            )
        return cost

    def frames_cost(self, found: ByteParts) -> int:
        """Memory transcoding the frames of `found` holds (decoded and encoded, all held)."""
        return 3 * self.pixels.frame_bytes(found.pixels) * len(found.frame_numbers or [])

    def instance_syntaxes(
        self, instances: list[StoredInstance], syntaxes: list[str | None]
    ) -> list[str]:
        """The transfer syntax each instance is sent in, from those a request accepts (best
        first; None: the default, "*": as stored); 406 naming the first that has none."""
        targets = []
        for inst in instances:
            target = choose_instance_syntax(syntaxes, inst.transfer_syntax_uid)
            if target is None:
                raise NotAcceptable(
                    f"instance {inst.sop_instance_uid} (stored in {inst.transfer_syntax_uid}) "
                    f"cannot be sent in any transfer syntax the request accepts "
                    f"({', '.join(t or 'default' for t in syntaxes)})"
                )
            targets.append(target)
        return targets

    def instance_parts(self, instances: list[StoredInstance], targets: list[str]) -> list[Part]:
        """Each instance in its target: stored ones stream from storage, transcoded ones are
        made now, so a failure is a clean 406 before anything is sent."""
        transcoded = dict(self.transcoded_all(instances, targets))
        out: list[Part] = []
        for inst in instances:
            data = transcoded.get(inst.sop_instance_uid)
            out.append(
                Part(
                    inst.size,
                    self._streamer(inst),
                    cached=self._cached(inst.blob_key, [(0, inst.size)]),
                )
                if data is None
                else Part.held(data)
            )
        return out

    def _streamer(self, inst: StoredInstance) -> Callable[[], Iterable[bytes]]:
        return lambda: self.stream(inst)

    def _cached(self, key: str, ranges: Ranges) -> Callable[[], bytes | None]:
        return lambda: self.cached(key, ranges)

    def cached(self, key: str, ranges: Ranges) -> bytes | None:
        """The bytes of `ranges` of the object `key` if storage can hand them over without
        waiting (a file in the page cache), else None: the event loop then reads them itself
        instead of paying a thread hop."""
        read = getattr(self._blobs, "read_cached", None)
        if read is None:
            return None
        pieces = []
        for offset, length in ranges:
            data = read(key, offset, length)
            if not isinstance(data, bytes):
                return None
            pieces.append(data)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def plan_bytes(
        self, found: ByteParts, choices: list[BytesChoice], single: bool, accepted: str | None
    ) -> BytesPlan:
        """The media type and transfer syntax of frames or bulk data (PS3.18 8.7.3.3-4,
        Table 8.7.3-5), from what a request accepts best first (`choices`, single-part
        types included; `single`: one part is asked for). Transcoded Pixel Data goes frame
        by frame, one part each: a single-part type fits only one frame (PS3.18 10.4.4).
        `accepted` is the request's wording, for the 406."""
        multipart = [c for c in choices if c.multipart]
        chosen = self._choose(found, choices if single else multipart)
        several_frames = len(found.frame_numbers or []) > 1
        if (
            chosen
            and not chosen[0].multipart
            and several_frames
            and not _as_stored(chosen[1], found)
        ):
            chosen = self._choose(found, multipart)
        if chosen is None:
            stored = found.transfer_syntax_uid
            raise NotAcceptable(
                f"this resource is available as {OCTET_STREAM} (transfer syntax {stored}"
                + (", or transcoded" if found.frame_numbers is not None else "")
                + f"); the request accepts {accepted!r}"
            )
        choice, target = chosen
        return BytesPlan(choice.media_type, target, choice.multipart, _as_stored(target, found))

    @staticmethod
    def _choose(found: ByteParts, choices: list[BytesChoice]) -> tuple[BytesChoice, str] | None:
        stored = found.transfer_syntax_uid
        if found.frame_numbers is not None:
            return choose_bytes(choices, stored)
        # Other bulk data is little-endian bytes, sent as they are.
        return next(
            (
                (c, stored)
                for c in choices
                if matches(c.media_type, OCTET_STREAM) and c.transfer_syntax in (None, "*", stored)
            ),
            None,
        )

    def byte_parts(self, found: ByteParts, plan: BytesPlan) -> list[Part]:
        """The parts of `found` under `plan`: byte ranges of the stored object, or its
        frames transcoded (held in memory together: see frames_cost)."""
        if not plan.as_stored:
            return [Part.held(data) for data in self.transcoded_frames(found, plan.transfer_syntax)]
        key = found.instance.blob_key

        def part(ranges: Ranges) -> Part:
            return Part(
                sum(length for _, length in ranges),
                lambda: self.stream_ranges(key, ranges),
                lambda start, length: self.stream_ranges(key, slice_ranges(ranges, start, length)),
                self._cached(key, ranges),
            )

        return [part(r) for r in found.parts]

    def instance_pixels(self, instance: StoredInstance) -> StoredPixels:
        """The layout of an instance the caller has already been allowed to find."""
        return self._stored_pixels(
            None, instance.study_uid, instance.series_uid, instance.sop_instance_uid
        )

    def transcoded_all(
        self, instances: list[StoredInstance], targets: list[str]
    ) -> list[tuple[str, bytes]]:
        """(SOP Instance UID, object) for each instance whose target differs from its
        stored syntax; they are held in memory together (see transcode_cost)."""
        return [
            (inst.sop_instance_uid, self.transcoded(inst, t))
            for inst, t in zip(instances, targets, strict=True)
            if t != inst.transfer_syntax_uid
        ]

    def transcoded_frames(self, found: ByteParts, target: str) -> list[bytes]:
        """The frames of `found` decoded and encoded in `target`."""
        assert found.frame_numbers is not None
        return self.pixels.encoded_frames(found.pixels, found.frame_numbers, target)

    def instances(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[StoredInstance]:
        caller.require(READ)
        found = self._index.instances(study_uid, series_uid, sop_instance_uid, scope=caller.studies)
        if not found:
            raise NotFound(missing(study_uid, series_uid, sop_instance_uid))
        return found

    def objects(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> list[StoredInstance]:
        """`instances`, to be sent whole (PS3.18 10.4.1.1.1): the caller may download."""
        caller.require(DOWNLOAD)
        return self.instances(caller, study_uid, series_uid, sop_instance_uid)

    def metadata(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        sop_instance_uid: str | None = None,
    ) -> Metadata:
        """The stored DICOM JSON of the instances in the scope, with the blob keys of the
        copies it describes (what its entity tag is made of)."""
        caller.require(READ)
        scope = caller.studies
        if self.metadata_cache is None:
            return self._metadata_read(study_uid, series_uid, sop_instance_uid, scope)
        # The copies in the scope (a light query), their texts from the cache where it has
        # them: a blob key names one immutable copy, so a cached text is never stale.
        stored = self._index.instances(study_uid, series_uid, sop_instance_uid, scope=scope)
        if not stored:
            raise NotFound(missing(study_uid, series_uid, sop_instance_uid))
        keys = [i.blob_key for i in stored]
        texts = self.metadata_cache.get_many(keys)
        absent = [k for k in keys if k not in texts]
        if absent:
            fetched = self._index.metadata_of(absent)
            if len(fetched) < len(absent):
                # A copy was replaced between the two lookups: read the scope again, whole.
                return self._metadata_read(study_uid, series_uid, sop_instance_uid, scope)
            self.metadata_cache.put_many(fetched)
            texts.update(fetched)
        return Metadata(keys, [texts[k] for k in keys])

    def _metadata_read(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_instance_uid: str | None,
        scope: StudyScope | None,
    ) -> Metadata:
        """The scope's metadata read from the index in one query, texts and keys together."""
        found = self._index.metadata(study_uid, series_uid, sop_instance_uid, scope=scope)
        if not found:
            raise NotFound(missing(study_uid, series_uid, sop_instance_uid))
        return Metadata([key for key, _ in found], [text for _, text in found])

    def stream(self, instance: StoredInstance, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        return self._blobs.iter_range(instance.blob_key, chunk_size=chunk_size)

    def stream_ranges(self, key: str, ranges: Ranges) -> Iterator[bytes]:
        for offset, length in ranges:
            yield from self._blobs.iter_range(key, offset, length)

    def frames(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str,
        sop_instance_uid: str,
        numbers: list[int],
    ) -> ByteParts:
        caller.require(READ)
        pixels = self._stored_pixels(caller.studies, study_uid, series_uid, sop_instance_uid)
        layout = pixels.layout
        if layout.frames is None:
            if layout.frames_error is None:
                raise NotFound(f"instance {sop_instance_uid} has no Pixel Data")
            # Frames not located at ingest (a deflated object): decoded from the whole object.
            require_frames(sop_instance_uid, layout.number_of_frames, numbers)
            return ByteParts(pixels, [], pixels.instance.transfer_syntax_uid, numbers)
        require_frames(sop_instance_uid, len(layout.frames), numbers)
        return ByteParts(
            pixels,
            [layout.frames[n - 1] for n in numbers],
            pixels.instance.transfer_syntax_uid,
            numbers,
        )

    def bulk_data(
        self, caller: Caller, study_uid: str, series_uid: str, sop_instance_uid: str, path: str
    ) -> ByteParts:
        caller.require(READ)
        if not _BULK_PATH.fullmatch(path):
            raise InvalidRequest(f"bulk data path {path!r} is not a tag path")
        pixels = self._stored_pixels(caller.studies, study_uid, series_uid, sop_instance_uid)
        layout = pixels.layout
        value = layout.bulk_data.get(path)
        if value is None:
            raise NotFound(f"instance {sop_instance_uid} has no bulk data at {path}")
        ts = pixels.instance.transfer_syntax_uid
        if path == f"{PIXEL_DATA:08X}" and ts not in uids.NATIVE_TRANSFER_SYNTAXES:
            # Encapsulated Pixel Data: one part per frame, in the stored transfer syntax.
            if layout.frames is None:
                raise NotAcceptable(
                    f"the Pixel Data frames cannot be located: {layout.frames_error}"
                )
            numbers = list(range(1, len(layout.frames) + 1))
            return ByteParts(pixels, list(layout.frames), ts, numbers)
        if path == f"{PIXEL_DATA:08X}" and layout.frames is not None:
            # Native Pixel Data is its frames one after the other: they may be transcoded.
            numbers = list(range(1, len(layout.frames) + 1))
            return ByteParts(pixels, [[value]], uids.EXPLICIT_VR_LITTLE_ENDIAN, numbers)
        return ByteParts(pixels, [[value]], uids.EXPLICIT_VR_LITTLE_ENDIAN)

    def stored_pixels(
        self, caller: Caller, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> StoredPixels:
        """The instance and its pixel layout, in one lookup (NotFound when not stored)."""
        caller.require(READ)
        return self._stored_pixels(caller.studies, study_uid, series_uid, sop_instance_uid)

    def _stored_pixels(
        self, scope: StudyScope | None, study_uid: str, series_uid: str, sop_instance_uid: str
    ) -> StoredPixels:
        """The instance and its layout if `scope` lets it be seen (None: every study)."""
        pixels = self._index.pixels(study_uid, series_uid, sop_instance_uid, scope=scope)
        if pixels is None:
            raise NotFound(missing(study_uid, series_uid, sop_instance_uid))
        return pixels


def _as_stored(target: str, found: ByteParts) -> bool:
    """Whether the parts can be read straight from the stored object in `target`."""
    stored = found.transfer_syntax_uid
    same = target == stored or (
        target == uids.EXPLICIT_VR_LITTLE_ENDIAN and stored in uids.NATIVE_TRANSFER_SYNTAXES
    )
    return same and bool(found.parts)


def require_frames(sop_instance_uid: str, count: int, numbers: list[int]) -> None:
    """404 for a frame number past the last (frame 0 is refused by parse_frame_numbers)."""
    beyond = [n for n in numbers if n > count]
    if beyond:
        raise NotFound(f"instance {sop_instance_uid} has {count} frame(s); no frame {beyond[0]}")


def missing(study: str, series: str | None = None, instance: str | None = None) -> str:
    """What is not stored, in words."""
    return not_stored(study, series, instance)
