"""Readable EXIF (albums/exif_info.py) from real EXIF that Pillow writes into a JPEG and
albums.imaging.read_metadata reads back, the way the metadata task stores it."""

import io
from datetime import datetime, timedelta, timezone
from fractions import Fraction

import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from albums.exif_info import camera_name, exposure_time, image_info
from albums.imaging import read_metadata


def jpeg(*, make="Canon", model="Canon EOS 5D Mark IV", lens="EF24-70mm f/2.8L II USM", exposure=(1, 250),
         f_number=(28, 10), iso=400, focal=(35, 1), when="2023:06:01 18:45:10", offset="+02:00",
         gps=((48, 1), (51, 1), (2958, 100)), gps_ref=("N", "E"), lon=((2, 1), (17, 1), (4020, 100)),
         orientation=1, size=(60, 40)) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if model is not None:
        exif[ExifTags.Base.Model] = model
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if lens:
        sub[ExifTags.Base.LensModel] = lens
    if exposure:
        sub[ExifTags.Base.ExposureTime] = IFDRational(*exposure)
    if f_number:
        sub[ExifTags.Base.FNumber] = IFDRational(*f_number)
    if iso:
        sub[ExifTags.Base.ISOSpeedRatings] = iso
    if focal:
        sub[ExifTags.Base.FocalLength] = IFDRational(*focal)
    if when:
        sub[ExifTags.Base.DateTimeOriginal] = when
    if offset:
        sub[ExifTags.Base.OffsetTimeOriginal] = offset
    if gps:
        gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        gps_ifd[ExifTags.GPS.GPSLatitudeRef] = gps_ref[0]
        gps_ifd[ExifTags.GPS.GPSLatitude] = tuple(IFDRational(*v) for v in gps)
        gps_ifd[ExifTags.GPS.GPSLongitudeRef] = gps_ref[1]
        gps_ifd[ExifTags.GPS.GPSLongitude] = tuple(IFDRational(*v) for v in lon)
    out = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(out, format="JPEG", exif=exif)
    return out.getvalue()


def info_of(data: bytes):
    metadata = read_metadata(io.BytesIO(data))
    return image_info(exif=metadata.exif, width=metadata.width, height=metadata.height, taken_at=metadata.taken_at,
                      camera=metadata.camera)


def test_a_full_set_of_exif_reads_like_a_photo_app():
    info = info_of(jpeg())
    assert info["camera"] == "Canon EOS 5D Mark IV"
    assert info["lens"] == "EF24-70mm f/2.8L II USM"
    assert info["exposure"] == "1/250 s · f/2.8 · ISO 400 · 35 mm"
    assert info["taken"] == datetime(2023, 6, 1, 18, 45, 10, tzinfo=timezone(timedelta(hours=2)))
    assert info["place"] == {"lat": pytest.approx(48.858217), "lon": pytest.approx(2.294500)}
    assert info["size"] == "60 × 40"


def test_southern_and_western_places_are_negative_and_the_size_is_upright():
    info = info_of(jpeg(gps=((33, 1), (52, 1), (0, 1)), gps_ref=("S", "W"), lon=((151, 1), (12, 1), (36, 1)),
                        orientation=6, size=(60, 40)))
    assert info["place"] == {"lat": pytest.approx(-33.866667), "lon": pytest.approx(-151.21)}
    assert info["size"] == "40 × 60"  # rotated by its orientation, as the viewer shows it


def test_what_the_camera_did_not_record_is_none_and_the_rest_still_reads():
    info = info_of(jpeg(lens=None, exposure=None, iso=None, gps=None, when=None, offset=None))
    assert (info["lens"], info["place"], info["taken"]) == (None, None, None)
    assert info["exposure"] == "f/2.8 · 35 mm"
    bare = io.BytesIO()
    Image.new("RGB", (8, 6)).save(bare, format="JPEG")
    assert info_of(bare.getvalue()) == {"camera": None, "lens": None, "exposure": None, "taken": None, "place": None,
                                        "size": "8 × 6"}


def test_nonsense_values_are_left_out_not_shown_as_zero():
    info = image_info(exif={"ExposureTime": 0.0, "FNumber": -2, "ISOSpeedRatings": [], "FocalLength": "35",
                            "GPS": {"latitude": 95.0, "longitude": 2.0}, "Make": 7, "LensModel": "  "},
                      width=None, height=10, taken_at=None)
    assert info == {"camera": None, "lens": None, "exposure": None, "taken": None, "place": None, "size": None}
    assert image_info(exif=None, width=1, height=1, taken_at=None)["size"] == "1 × 1"
    assert image_info(exif={"ISOSpeedRatings": [800, 800]}, width=1, height=1, taken_at=None)["exposure"] == "ISO 800"


@pytest.mark.parametrize("make,model,expected", [
    ("Canon", "Canon EOS 5D Mark IV", "Canon EOS 5D Mark IV"),
    ("NIKON CORPORATION", "NIKON D750", "NIKON D750"),
    ("FUJIFILM", "X-T3", "FUJIFILM X-T3"),
    ("Apple", "iPhone 15 Pro", "Apple iPhone 15 Pro"),
    ("SONY", "ILCE-7M3", "SONY ILCE-7M3"),
    ("", "ILCE-7M3", "ILCE-7M3"),
    ("Leica  Camera AG", None, "Leica Camera AG"),
    (None, None, None),
])
def test_camera_names_say_the_maker_once(make, model, expected):
    assert camera_name(make=make, model=model) == expected


def test_the_stored_camera_column_is_the_fallback():
    assert camera_name(make=None, model=None, fallback="Canon EOS R5") == "Canon EOS R5"


@pytest.mark.parametrize("seconds,text", [
    (1 / 250, "1/250 s"), (0.5, "1/2 s"), (1 / 3, "1/3 s"), (1 / 8000, "1/8000 s"), (0.3, "0.3 s"),
    (1.0, "1 s"), (2.5, "2.5 s"), (30.0, "30 s"), (float(Fraction(1, 60)), "1/60 s"), (1 / 13, "1/13 s"),
])
def test_exposure_times_read_as_cameras_print_them(seconds, text):
    assert exposure_time(seconds) == text
