"""Rendered resources and thumbnails (PS3.18 10.4.1.1.3, 10.4.1.1.4).

Renderings are kept in a small in-process cache keyed by the blob key (one immutable copy),
the frame and the parameters: a study list asking for the same thumbnails again is served
without decoding, and a copy replaced by another process has a new key, so nothing stale is
ever served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from dicomweb_server.dicom import render
from dicomweb_server.dicom.render import RenderParams
from dicomweb_server.services.context import READ, Caller
from dicomweb_server.services.errors import InvalidRequest, NotAcceptable, NotFound
from dicomweb_server.services.pixels import PixelReader
from dicomweb_server.services.ports import RetrieveIndex, StoredPixels
from dicomweb_server.services.retrieve import missing, require_frames

THUMBNAIL_SIZE = (128, 128)


@dataclass(frozen=True)
class Rendering:
    """One image to make: frames of one stored copy under the parameters asked for. Its key
    names the image exactly (a copy never changes), so it is the image's cache key and,
    before any decoding, its entity tag."""

    pixels: StoredPixels
    numbers: list[int]
    params: RenderParams

    @property
    def key(self) -> str:
        numbers = ",".join(map(str, self.numbers))
        return f"{self.pixels.instance.blob_key}|{numbers}|{self.params.key()}"


class RenderCache:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self._max_bytes // 4:
            return
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= len(old) if old is not None else 0
            self._items[key] = value
            self._bytes += len(value)
            while self._bytes > self._max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


class RenderService:
    def __init__(
        self,
        index: RetrieveIndex,
        pixels: PixelReader,
        cache_bytes: int = 64 * 2**20,
        max_pixels: int = 64 * 2**20,
    ) -> None:
        self._index = index
        self._pixels = pixels
        self.max_pixels = max_pixels
        self._cache = RenderCache(cache_bytes)

    def _stored(self, caller: Caller, study: str, series: str, instance: str) -> StoredPixels:
        found = self._index.pixels(study, series, instance, scope=caller.studies)
        if found is None:
            raise NotFound(missing(study, series, instance))
        return found

    def _images(self, caller: Caller, study: str, series: str | None) -> list[StoredPixels]:
        """The instances of a study or series that have Pixel Data, in one index query."""
        found = self._index.layouts(study, series, scope=caller.studies)
        if not found:
            raise NotFound(missing(study, series))
        images = [p for p in found if p.layout.number_of_frames > 0]
        if not images:
            raise _no_images(study, series)
        return images

    def frames(
        self,
        caller: Caller,
        study: str,
        series: str,
        instance: str,
        numbers: list[int],
        params: RenderParams,
    ) -> list[Rendering]:
        """Each frame to render, or (GIF) all of them as one animation."""
        caller.require(READ)
        return self.frames_of(self._stored(caller, study, series, instance), numbers, params)

    def frames_of(
        self, pixels: StoredPixels, numbers: list[int], params: RenderParams
    ) -> list[Rendering]:
        """`frames` of an instance already looked up."""
        _image(pixels)
        require_frames(pixels.instance.sop_instance_uid, pixels.layout.number_of_frames, numbers)
        if params.media_type == render.GIF and len(numbers) > 1:
            return [Rendering(pixels, numbers, params)]
        return [Rendering(pixels, [n], params) for n in numbers]

    def instance(
        self, caller: Caller, study: str, series: str, instance: str, params: RenderParams
    ) -> Rendering:
        """The instance: its first frame, or every frame as an animated GIF."""
        caller.require(READ)
        return self.instance_of(self._stored(caller, study, series, instance), params)

    def instance_of(self, pixels: StoredPixels, params: RenderParams) -> Rendering:
        """`instance` of an instance already looked up."""
        _image(pixels)
        count = pixels.layout.number_of_frames
        numbers = list(range(1, count + 1)) if params.media_type == render.GIF else [1]
        return Rendering(pixels, numbers, params)

    def instances(
        self, caller: Caller, study: str, series: str | None, params: RenderParams
    ) -> list[Rendering]:
        """Every image instance of a study or series, rendered as `instance` renders one."""
        caller.require(READ)
        return [Rendering(p, [1], params) for p in self._images(caller, study, series)]

    def thumbnail(
        self,
        caller: Caller,
        study: str,
        series: str | None,
        instance: str | None,
        frame: int | None,
        params: RenderParams,
    ) -> Rendering:
        """A small rendering of a representative frame: the middle instance of the first
        series of a study, the middle instance of a series, the middle frame of an instance."""
        caller.require(READ)
        if params.viewport is None:
            params = RenderParams(**{**params.__dict__, "viewport": THUMBNAIL_SIZE})
        if instance is not None:
            assert series is not None
            pixels = _image(self._stored(caller, study, series, instance))
        else:
            pixels = self._representative(caller, study, series)
        count = pixels.layout.number_of_frames
        if frame is not None:
            require_frames(pixels.instance.sop_instance_uid, count, [frame])
        return Rendering(pixels, [frame or (count + 1) // 2], params)

    def presentation(
        self, caller: Caller, study: str, series: str, instance: str, image_uid: str
    ) -> render.Presentation:
        """A stored Grayscale Softcopy Presentation State, as it applies to one image."""
        caller.require(READ)
        found = self._index.instances(study, series, instance, scope=caller.studies)
        if not found:
            raise NotFound(
                f"presentation state {instance} (series {series}) is not stored in study {study}"
            )
        state = self._pixels.parse_object(found[0])
        if str(state.get("SOPClassUID", "")) not in render.PRESENTATION_STATE_CLASSES:
            raise InvalidRequest(f"instance {instance} is not a presentation state")
        return render.presentation_for(state, image_uid)

    def _representative(self, caller: Caller, study: str, series: str | None) -> StoredPixels:
        """The middle image of the first series that has images (one index query)."""
        by_series: dict[str, list[StoredPixels]] = {}
        for pixels in self._images(caller, study, series):
            by_series.setdefault(pixels.instance.series_uid, []).append(pixels)
        members = next(iter(by_series.values()))
        return members[(len(members) - 1) // 2]

    def cached(self, renderings: list[Rendering]) -> list[bytes] | None:
        """The images of `renderings` when the cache holds them all (no decoding)."""
        found: list[bytes] = []
        for rendering in renderings:
            body = self._cache.get(rendering.key)
            if body is None:
                return None
            found.append(body)
        return found

    def render(self, renderings: list[Rendering]) -> list[bytes]:
        """The images of `renderings`, from the cache or made now."""
        return [self._render(r) for r in renderings]

    def _render(self, rendering: Rendering) -> bytes:
        pixels, numbers, params = rendering.pixels, rendering.numbers, rendering.params
        key = rendering.key
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        header = self._pixels.header(pixels)
        # Every frame of an animation is held as an image: the output is bounded before any
        # frame is decoded, whatever the viewport asks for.
        rows, columns = int(header.get("Rows", 0)), int(header.get("Columns", 0))
        shown = render.output_pixels(rows, columns, params) * len(numbers)
        if shown > self.max_pixels:
            raise InvalidRequest(
                f"the rendering would hold {shown} pixels ({len(numbers)} frame(s)); this "
                f"server renders at most {self.max_pixels} pixels per response: ask for a "
                "smaller viewport or fewer frames"
            )
        # Held at once: one decoded frame in floating point while its display values are
        # computed, and every output image (RGB) until the animation is encoded.
        working = 8 * self._pixels.frame_bytes(pixels) + 2 * 3 * shown
        with self._pixels.budget.reserve(working):
            images = []
            for array, description in self._pixels.frame_arrays(pixels, numbers):
                display = render.to_display(
                    array, description, header, params.window, params.presentation
                )
                images.append(render.compose(display, params, header))
            body = render.encode(images, params)
        self._cache.put(key, body)
        return body


def _image(pixels: StoredPixels) -> StoredPixels:
    """`pixels`, when it has Pixel Data to render."""
    if pixels.layout.number_of_frames < 1:
        raise NotAcceptable(
            f"instance {pixels.instance.sop_instance_uid} has no Pixel Data: it cannot be rendered"
        )
    return pixels


def _no_images(study: str, series: str | None) -> NotAcceptable:
    return NotAcceptable(
        f"{'series ' + series if series else 'study ' + study} has no images to render"
    )
