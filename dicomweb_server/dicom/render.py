"""Rendered images (PS3.18 8.3.5, 10.4.1.1.3; PS3.4 N.2 pixel transformations), pure.

Grayscale: Modality LUT (Rescale Slope/Intercept or the Modality LUT Sequence), then the VOI
transformation (the request's window, else the object's first Window Center/Width with its
VOI LUT Function, else its VOI LUT Sequence, else the frame's own range), then MONOCHROME1 or
an INVERSE Presentation LUT Shape inverted, so the output is what a viewer would show.
Colour: RGB (YBR is decoded to RGB), PALETTE COLOR through its lookup tables; scaled to 8 bits.
Then the source region, the viewport, annotations, and the image format.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from pydicom import uid
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut

from dicomweb_server.dicom import numbers
from dicomweb_server.dicom.errors import InvalidQuery

# PS3.4 B.5: Grayscale, Color, Pseudo-Color and Blending Softcopy Presentation State Storage.
PRESENTATION_STATE_CLASSES = frozenset(
    str(sop_class)
    for sop_class in (
        uid.GrayscaleSoftcopyPresentationStateStorage,
        uid.ColorSoftcopyPresentationStateStorage,
        uid.PseudoColorSoftcopyPresentationStateStorage,
        uid.BlendingSoftcopyPresentationStateStorage,
    )
)

JPEG = "image/jpeg"
PNG = "image/png"
GIF = "image/gif"
RENDERED_MEDIA_TYPES = (JPEG, PNG, GIF)
_PIL_FORMAT = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF"}
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
ANNOTATIONS = ("patient", "technique")
# Largest viewport width or height a request may name (PS3.18 8.3.5.1.3).
MAX_VIEWPORT = 16384


@dataclass(frozen=True)
class Window:
    center: float
    width: float
    function: str = "LINEAR"


@dataclass(frozen=True)
class Presentation:
    """What a Grayscale Softcopy Presentation State changes in rendering (PS3.4 N.2; the
    subset we apply: Modality LUT, Softcopy VOI LUT, Presentation LUT Shape, Displayed Area,
    rotation and flip). Graphic annotations and shutters are not drawn."""

    rescale: tuple[float, float] | None = None  # slope, intercept
    window: Window | None = None
    inverse: bool | None = None  # None: as the image says
    # Displayed area, 1-based pixel corners: left, top, right, bottom.
    area: tuple[int, int, int, int] | None = None
    rotation: int = 0
    flip: bool = False


@dataclass(frozen=True)
class RenderParams:
    media_type: str = JPEG
    window: Window | None = None
    # Largest output size (width, height); the aspect ratio is kept.
    viewport: tuple[int, int] | None = None
    # Source region in pixels: x, y, width, height (PS3.18 8.3.5.1.3).
    source: tuple[float, float, float, float] | None = None
    # Source region as fractions of the image: x1, y1, x2, y2 (WADO-URI `region`).
    region: tuple[float, float, float, float] | None = None
    quality: int = 90
    annotations: tuple[str, ...] = field(default_factory=tuple)
    presentation: Presentation | None = None

    def key(self) -> str:
        return repr(self)


def _numbers(text: str, what: str, count: tuple[int, ...]) -> list[float]:
    values = numbers.parse_decimals(text, what)
    if len(values) not in count:
        raise InvalidQuery(f"{what} {text[:40]!r} needs {' or '.join(map(str, count))} numbers")
    return values


def parse_window(text: str) -> Window:
    """PS3.18 8.3.5.1.4: `window=center,width,function`."""
    parts = text.split(",")
    if len(parts) != 3:
        raise InvalidQuery(f"window {text!r} must be center,width,function")
    center, width = _numbers(",".join(parts[:2]), "window", (2,))
    function = parts[2].strip().upper()
    if function not in VOI_FUNCTIONS:
        raise InvalidQuery(f"window function {parts[2]!r} is not one of {', '.join(VOI_FUNCTIONS)}")
    # PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, the other functions above 0.
    if (function == "LINEAR" and width < 1) or width <= 0:
        raise InvalidQuery(f"window width {width:g} is too small for {function}")
    return Window(center, width, function)


def parse_viewport(text: str) -> tuple[tuple[int, int], tuple[float, float, float, float] | None]:
    """PS3.18 8.3.5.1.3: `viewport=vw,vh[,sx,sy,sw,sh]`."""
    items = text.split(",")
    if len(items) not in (2, 6):
        raise InvalidQuery(f"viewport {text[:40]!r} needs 2 or 6 numbers")
    width, height = (
        numbers.parse_integer(v, "viewport width and height", 1, MAX_VIEWPORT) for v in items[:2]
    )
    source = None
    if len(items) == 6:
        sx, sy, sw, sh = (numbers.parse_decimal(v, "viewport source region") for v in items[2:])
        if sx < 0 or sy < 0 or sw == 0 or sh == 0:
            raise InvalidQuery(f"viewport {text!r}: the source region is empty or negative")
        source = (sx, sy, sw, sh)
    return (width, height), source


def parse_quality(text: str) -> int:
    values = _numbers(text, "quality", (1,))
    if not 1 <= values[0] <= 100 or values[0] != int(values[0]):
        raise InvalidQuery(f"quality {text!r} must be an integer from 1 to 100")
    return int(values[0])


def parse_annotations(text: str) -> tuple[str, ...]:
    wanted = tuple(a.strip().lower() for a in text.split(",") if a.strip())
    unknown = [a for a in wanted if a not in ANNOTATIONS]
    if unknown:
        raise InvalidQuery(f"annotation {unknown[0]!r} is not one of {', '.join(ANNOTATIONS)}")
    return wanted


def parse_region(text: str) -> tuple[float, float, float, float]:
    """PS3.18 8.2.? WADO-URI `region=x1,y1,x2,y2`, fractions of the image from 0.0 to 1.0."""
    x1, y1, x2, y2 = _numbers(text, "region", (4,))
    if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
        raise InvalidQuery(f"region {text!r} must satisfy 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
    return x1, y1, x2, y2


def apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """PS3.3 C.11.2.1.2: the VOI function to output 0..255 (float)."""
    c, w = window.center, window.width
    x = values.astype(np.float64)
    if window.function == "SIGMOID":
        return 255.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    if window.function == "LINEAR_EXACT":
        return np.clip(((x - c) / w + 0.5) * 255.0, 0.0, 255.0)
    # LINEAR (C.11.2.1.2.1)
    return (
        np.clip(((x - (c - 0.5)) / (w - 1) + 0.5) * 255.0, 0.0, 255.0)
        if w > 1
        else np.where(x <= c - 0.5, 0.0, 255.0)
    )


def to_display(
    array: np.ndarray,
    description: dict[str, Any],
    header: Dataset,
    window: Window | None,
    presentation: Presentation | None = None,
) -> np.ndarray:
    """One decoded frame as 8-bit display values: (rows, columns) or (rows, columns, 3)."""
    photometric = str(description["photometric_interpretation"])
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(array, header)
        top = float(rgb.max()) if rgb.size else 0.0
        scale = 255.0 / 65535.0 if top > 255 else 1.0
        return np.clip(np.rint(rgb * scale), 0, 255).astype(np.uint8)
    if int(description["samples_per_pixel"]) == 3:
        bits = int(description["bits_stored"])
        return (array >> (bits - 8) if bits > 8 else array).astype(np.uint8)
    rescale = presentation.rescale if presentation is not None else None
    if window is None and presentation is not None:
        window = presentation.window
    if window is None:
        window = _stored_window(header)
    inverse = photometric == "MONOCHROME1" or header.get("PresentationLUTShape") == "INVERSE"
    if presentation is not None and presentation.inverse is not None:
        # PS3.4 N.2.1.1: the state's Presentation LUT Shape replaces the image's own.
        inverse = presentation.inverse
    linear = rescale is not None or "ModalityLUTSequence" not in header
    if array.dtype.kind in "iu" and linear:
        # Integer samples: the pipeline runs once per stored value in the frame's range and
        # the frame is looked up, several times faster than per pixel. A linear Modality
        # LUT keeps the frame's extremes at the ends of that range, so the result is equal.
        low, high = int(array.min()), int(array.max())
        if high - low < 1 << 17:
            domain = np.arange(low, high + 1, dtype=np.int64)
            lut = _grey(_modality(domain, header, rescale), header, window, inverse)
            return np.asarray(lut[array.astype(np.int64) - low], dtype=np.uint8)
    return _grey(_modality(array, header, rescale), header, window, inverse)


def _grey(values: np.ndarray, header: Dataset, window: Window | None, inverse: bool) -> np.ndarray:
    """Modality values to 8-bit display values: VOI, then the Presentation LUT shape."""
    if window is not None:
        display = apply_window(values, window)
    elif "VOILUTSequence" in header:
        voi = apply_voi_lut(values, header, prefer_lut=True).astype(np.float64)
        lut_bits = int(header.VOILUTSequence[0].LUTDescriptor[2])
        display = voi * 255.0 / ((1 << lut_bits) - 1)
    else:
        low, high = float(values.min()), float(values.max())
        display = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    if inverse:
        display = 255.0 - display
    return np.asarray(np.clip(np.rint(display), 0, 255), dtype=np.uint8)


def _modality(
    array: np.ndarray, header: Dataset, rescale: tuple[float, float] | None = None
) -> np.ndarray:
    if rescale is not None:
        return array.astype(np.float64) * rescale[0] + rescale[1]
    if "ModalityLUTSequence" in header:
        return np.asarray(apply_modality_lut(array, header), dtype=np.float64)
    slope = float(header.get("RescaleSlope", 1) or 1)
    intercept = float(header.get("RescaleIntercept", 0) or 0)
    return array.astype(np.float64) * slope + intercept


def _stored_window(header: Dataset) -> Window | None:
    center, width = header.get("WindowCenter"), header.get("WindowWidth")
    if center is None or width is None or center == "" or width == "":
        return None
    first_c = center[0] if _is_multi(center) else center
    first_w = width[0] if _is_multi(width) else width
    try:
        c, w = float(first_c), float(first_w)
    except (TypeError, ValueError):
        return None
    function = str(header.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS or (function == "LINEAR" and w < 1) or w <= 0:
        return None
    return Window(c, w, function)


def _is_multi(value: Any) -> bool:
    return not isinstance(value, str | bytes | int | float) and hasattr(value, "__getitem__")


def output_pixels(rows: int, columns: int, params: RenderParams) -> int:
    """Pixels of one rendered frame of a `rows` x `columns` image, as `compose` makes it: the
    source scaled to fit the viewport (a crop only makes the source smaller, and the output
    never exceeds the viewport), else the source itself. Known before any decoding."""
    if params.viewport is None:
        return max(1, rows) * max(1, columns)
    vw, vh = params.viewport
    if params.region is not None or params.source is not None or params.presentation:
        return vw * vh
    scale = min(vw / max(1, columns), vh / max(1, rows))
    return max(1, round(columns * scale)) * max(1, round(rows * scale))


def compose(display: np.ndarray, params: RenderParams, header: Dataset) -> Image.Image:
    """Region, viewport and annotations applied to one frame's display values."""
    image = Image.fromarray(display, "RGB" if display.ndim == 3 else "L")
    if params.presentation is not None:
        image = _present(image, params.presentation)
    if params.region is not None:
        x1, y1, x2, y2 = params.region
        w, h = image.size
        image = _crop(image, (x1 * w, y1 * h, x2 * w, y2 * h), "region")
    if params.source is not None:
        sx, sy, sw, sh = params.source
        w, h = image.size
        if sx >= w or sy >= h:
            raise InvalidQuery(f"the viewport source region starts outside the {w}x{h} image")
        box = (sx, sy, min(sx + abs(sw), w), min(sy + abs(sh), h))
        image = _crop(image, box, "viewport source region")
        # PS3.18 8.3.5.1.3: a negative width or height flips the region.
        if sw < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if sh < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    if params.viewport is not None:
        vw, vh = params.viewport
        w, h = image.size
        scale = min(vw / w, vh / h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        if size != image.size:
            image = image.resize(
                size, Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BILINEAR
            )
    if params.annotations:
        image = _annotate(image, params.annotations, header)
    return image


def _crop(image: Image.Image, box: tuple[float, float, float, float], what: str) -> Image.Image:
    """The pixels of `box` (left, top, right, bottom), at least one; a box that holds no
    whole pixel of the image is refused (every later step divides by the image size)."""
    w, h = image.size
    left, top = max(0, round(box[0])), max(0, round(box[1]))
    right, bottom = min(w, round(box[2])), min(h, round(box[3]))
    if right <= left or bottom <= top:
        raise InvalidQuery(f"the {what} holds no pixel of the {w}x{h} image")
    return image.crop((left, top, right, bottom))


def _present(image: Image.Image, state: Presentation) -> Image.Image:
    """Displayed area, then rotation and flip (PS3.4 N.2.3 spatial transformation)."""
    if state.area is not None:
        left, top, right, bottom = state.area
        image = _crop(
            image, (left - 1, top - 1, right, bottom), "presentation state's displayed area"
        )
    if state.rotation:
        image = image.rotate(-state.rotation, expand=True)  # clockwise, as PS3.3 C.10.6
    if state.flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def presentation_for(state: Dataset, sop_instance_uid: str) -> Presentation:
    """The parts of a presentation state that apply to one referenced image."""

    def applies(item: Dataset) -> bool:
        refs = item.get("ReferencedImageSequence")
        return not refs or any(r.get("ReferencedSOPInstanceUID") == sop_instance_uid for r in refs)

    rescale = None
    if "RescaleSlope" in state or "RescaleIntercept" in state:
        rescale = (float(state.get("RescaleSlope", 1)), float(state.get("RescaleIntercept", 0)))
    window = None
    for item in state.get("SoftcopyVOILUTSequence", []):
        if applies(item):
            window = _stored_window(item)
            break
    area = None
    for item in state.get("DisplayedAreaSelectionSequence", []):
        if applies(item) and "DisplayedAreaTopLeftHandCorner" in item:
            (left, top), (right, bottom) = (
                item.DisplayedAreaTopLeftHandCorner,
                item.DisplayedAreaBottomRightHandCorner,
            )
            area = (int(left), int(top), int(right), int(bottom))
            break
    shape = state.get("PresentationLUTShape")
    return Presentation(
        rescale=rescale,
        window=window,
        inverse=None if shape is None else shape == "INVERSE",
        area=area,
        rotation=int(state.get("ImageRotation", 0) or 0) % 360,
        flip=state.get("ImageHorizontalFlip") == "Y",
    )


def _annotate(image: Image.Image, wanted: tuple[str, ...], header: Dataset) -> Image.Image:
    """PS3.18 8.3.5.1.1: burn in patient and/or technique information."""
    image = image.convert("RGB")
    draw = ImageDraw.Draw(image)
    if "patient" in wanted:
        text = f"{header.get('PatientName', '')}  {header.get('PatientID', '')}".strip()
        draw.text((3, 3), text, fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    if "technique" in wanted:
        parts = [str(header.get(k, "")) for k in ("Modality", "SeriesDescription")]
        window = _stored_window(header)
        if window is not None:
            parts.append(f"W {window.width:g} L {window.center:g}")
        text = "  ".join(p for p in parts if p)
        draw.text(
            (3, max(0, image.size[1] - 14)),
            text,
            fill=(255, 255, 255),
            stroke_width=1,
            stroke_fill=(0, 0, 0),
        )
    return image


def encode(images: list[Image.Image], params: RenderParams) -> bytes:
    """One image, or for GIF several frames as an animation."""
    out = io.BytesIO()
    first = images[0]
    if params.media_type == GIF and len(images) > 1:
        first.save(out, "GIF", save_all=True, append_images=images[1:], duration=100, loop=0)
    elif params.media_type == JPEG:
        first.save(out, "JPEG", quality=params.quality)
    else:
        first.save(out, _PIL_FORMAT[params.media_type])
    return out.getvalue()
