"""An image's stored metadata as a person reads it: camera, lens, exposure, capture time, place, size.

Pure functions on the values `albums.imaging.read_metadata` stores (the JSON-safe EXIF subset, the
capture time, the orientation-corrected size); no database, no file. A value that is missing or
makes no sense (a zero exposure, a negative f-number) is left out (None), never shown as "0".
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, TypedDict


class Place(TypedDict):
    lat: float
    lon: float


class ImageInfo(TypedDict):
    camera: str | None
    lens: str | None
    exposure: str | None
    taken: datetime | None
    place: Place | None
    size: str | None


def _number(value: Any) -> float | None:
    """A finite positive number out of an EXIF value (a list takes its first item: ISO may be one)."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) and value > 0 else None


def _text(value: Any) -> str:
    return " ".join(value.split()) if isinstance(value, str) else ""


def _trim(value: float, places: int = 1) -> str:
    """2.8 → "2.8", 8.0 → "8", 35.0 → "35"."""
    return f"{value:.{places}f}".rstrip("0").rstrip(".")


def camera_name(*, make: Any, model: Any, fallback: str = "") -> str | None:
    """"Canon" + "Canon EOS 5D Mark IV" → "Canon EOS 5D Mark IV"; "NIKON CORPORATION" + "NIKON D750" →
    "NIKON D750"; "FUJIFILM" + "X-T3" → "FUJIFILM X-T3". The model alone when it already names the maker."""
    make, model = _text(make), _text(model)
    if not model:
        return fallback or make or None
    maker = make.split()[0].lower() if make else ""
    if not maker or model.lower().startswith(maker):
        return model
    return f"{make} {model}"


def exposure_time(seconds: float) -> str:
    """0.004 → "1/250 s", 0.5 → "1/2 s", 1/3 → "1/3 s", 0.3 → "0.3 s", 2.0 → "2 s"."""
    if seconds < 1:
        denominator = 1 / seconds
        if abs(denominator - round(denominator)) < 0.05 * denominator or denominator >= 10:
            return f"1/{round(denominator)} s"
        return f"{_trim(seconds)} s"
    return f"{_trim(seconds)} s"


def exposure(exif: dict[str, Any]) -> str | None:
    """"1/250 s · f/2.8 · ISO 400 · 35 mm", with whichever of the four the camera recorded."""
    parts = []
    if (seconds := _number(exif.get("ExposureTime"))) is not None:
        parts.append(exposure_time(seconds))
    if (f_number := _number(exif.get("FNumber"))) is not None:
        parts.append(f"f/{_trim(f_number)}")
    if (iso := _number(exif.get("ISOSpeedRatings"))) is not None:
        parts.append(f"ISO {round(iso)}")
    if (focal := _number(exif.get("FocalLength"))) is not None:
        parts.append(f"{_trim(focal)} mm")
    return " · ".join(parts) or None


def place(exif: dict[str, Any]) -> Place | None:
    gps = exif.get("GPS")
    if not isinstance(gps, dict):
        return None
    lat, lon = gps.get("latitude"), gps.get("longitude")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lat, lon)):
        return None
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    return {"lat": float(lat), "lon": float(lon)}


def image_info(*, exif: dict[str, Any] | None, width: int | None, height: int | None, taken_at: datetime | None,
               camera: str = "") -> ImageInfo:
    """Every field, None where unknown. `camera` is the stored camera column, used when EXIF has no
    Make/Model (rows made before the EXIF subset kept them)."""
    exif = exif if isinstance(exif, dict) else {}
    return {
        "camera": camera_name(make=exif.get("Make"), model=exif.get("Model"), fallback=camera),
        "lens": _text(exif.get("LensModel")) or None,
        "exposure": exposure(exif),
        "taken": taken_at,
        "place": place(exif),
        "size": f"{width} × {height}" if width and height else None,
    }
