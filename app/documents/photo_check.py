"""The badge photo check on upload: one frontal face, large enough, in good light, on a plain
light background. Faces are found by the frontal-face Haar cascade that opencv-python-headless
ships (cv2.data): nothing is downloaded at run time. Thresholds come from config (PHOTO_*).

Every upload path (the unit's person form, the app's PUT /me/photo) runs it through
`app.workflow.persons.store_photo`, which stores the verdict and the figures on the person.
"""
from __future__ import annotations

import io
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np
from flask_babel import lazy_gettext as _l
from PIL import ExifTags, Image, ImageOps

from app import models as m

P = m.PhotoProblem
# Only a background that is not plain and light lets the photo through (the reviewer decides);
# what the unit reads about it.
WARNINGS = {P.background: _l("The background is not plain and light, and the security review "
                             "may refuse the photo: a plain white or light grey background "
                             "is best.")}
CASCADE = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
# Faces are looked for on the photo scaled down to this size: the same result for a phone's
# 4000-pixel picture, in a fraction of the time.
DETECT_MAX_SIDE = 640
# A detection smaller than this share of the largest face is a pattern in the clothes or the
# background, not a second person: "several faces" counts faces of comparable size.
SECOND_FACE_MIN_SHARE = 0.4
# The border strips read as the background: the top tenth, and a tenth at each side of the
# upper half (below it are the shoulders).
BORDER_SHARE = 0.1


@dataclass(frozen=True)
class PhotoLimits:
    max_pixels: int
    min_width: int
    min_height: int
    min_luminance: float
    min_face_ratio: float
    background_min_luminance: float
    background_max_spread: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "PhotoLimits":
        return cls(config["PHOTO_MAX_PIXELS"], config["PHOTO_MIN_WIDTH"],
                   config["PHOTO_MIN_HEIGHT"], config["PHOTO_MIN_LUMINANCE"],
                   config["PHOTO_MIN_FACE_RATIO"], config["PHOTO_BACKGROUND_MIN_LUMINANCE"],
                   config["PHOTO_BACKGROUND_MAX_SPREAD"])


@dataclass
class PhotoCheck:
    """What the check measured on the upright photo, and what it found wrong."""

    width: int
    height: int
    luminance: float
    background_luminance: float
    background_spread: float
    faces: int | None = None          # None: not looked for (too small or too dark to tell)
    face_ratio: float | None = None
    problems: list[m.PhotoProblem] = field(default_factory=list)

    @property
    def verdict(self) -> m.PhotoVerdict:
        if any(p not in WARNINGS for p in self.problems):
            return m.PhotoVerdict.refused
        return m.PhotoVerdict.warning if self.problems else m.PhotoVerdict.passed

    @property
    def refusals(self) -> list[m.PhotoProblem]:
        return [p for p in self.problems if p not in WARNINGS]

    @property
    def warnings(self) -> list[m.PhotoProblem]:
        return [p for p in self.problems if p in WARNINGS]

    def figures(self) -> dict[str, Any]:
        """The stored form (JSON): the figures a reviewer reads and the problems' codes."""
        return {"width": self.width, "height": self.height,
                "luminance": round(self.luminance, 1), "faces": self.faces,
                "face_ratio": None if self.face_ratio is None else round(self.face_ratio, 3),
                "background_luminance": round(self.background_luminance, 1),
                "background_spread": round(self.background_spread, 1),
                "problems": [p.value for p in self.problems]}


def oversized(data: bytes, limits: PhotoLimits) -> Any | None:
    """Why the picture is too large to be checked, or None; only its header is read (a small
    file can hold a huge picture)."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    if width * height <= limits.max_pixels:
        return None
    return _l("The picture is too large (%(width)d × %(height)d pixels): at most %(max)d "
              "megapixels; save it smaller.", width=width, height=height,
              max=limits.max_pixels // 1_000_000)


def upright(data: bytes) -> tuple[Image.Image, bool]:
    """The picture as it is meant to be seen (a phone's EXIF orientation applied), and whether
    it had to be turned or mirrored for that."""
    image = Image.open(io.BytesIO(data))
    turned = image.getexif().get(ExifTags.Base.Orientation, 1) in range(2, 9)
    return ImageOps.exif_transpose(image), turned


def check_photo(image: Image.Image, limits: PhotoLimits) -> PhotoCheck:
    """Measure the photo and list its problems, the refusing ones first. A picture too small
    or too dark is not searched for faces: what is found there would mislead."""
    gray = np.asarray(image.convert("L"))
    height, width = gray.shape
    background = _border(gray)
    check = PhotoCheck(width, height, float(gray.mean()), float(background.mean()),
                       float(background.std()))
    if width < limits.min_width or height < limits.min_height:
        check.problems.append(P.image_too_small)
    elif check.luminance < limits.min_luminance:
        check.problems.append(P.too_dark)
    else:
        faces = detect_faces(gray)
        check.faces = len(faces)
        if not faces:
            check.problems.append(P.no_face)
        elif len(faces) > 1:
            check.problems.append(P.several_faces)
        else:
            check.face_ratio = faces[0][3] / height
            if check.face_ratio < limits.min_face_ratio:
                check.problems.append(P.face_too_small)
    if (check.background_luminance < limits.background_min_luminance
            or check.background_spread > limits.background_max_spread):
        check.problems.append(P.background)
    return check


def _border(gray: np.ndarray) -> np.ndarray:
    height, width = gray.shape
    top = max(1, int(height * BORDER_SHARE))
    side = max(1, int(width * BORDER_SHARE))
    upper = max(top, height // 2)
    return np.concatenate([gray[:top].ravel(), gray[top:upper, :side].ravel(),
                           gray[top:upper, -side:].ravel()])


_local = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    """One classifier per thread (detectMultiScale keeps state in the classifier)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        cascade = cv2.CascadeClassifier(CASCADE)
        if cascade.empty():
            raise RuntimeError(f"the face cascade {CASCADE} could not be loaded")
        _local.cascade = cascade
    return cascade


def detect_faces(gray: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Frontal faces as (x, y, w, h) in the photo's pixels, largest first, one per person:
    overlapping detections are pruned, and much smaller ones are not counted."""
    scale = min(1.0, DETECT_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale,
                                                 interpolation=cv2.INTER_AREA)
    side = max(24, int(min(small.shape) * 0.08))
    found = _cascade().detectMultiScale(small, scaleFactor=1.1,
                                        minNeighbors=5, minSize=(side, side))
    boxes = sorted((tuple(int(round(v / scale)) for v in box) for box in found),
                   key=lambda b: b[2] * b[3], reverse=True)
    kept: list[tuple[int, int, int, int]] = []
    for box in boxes:
        if kept and box[3] < kept[0][3] * SECOND_FACE_MIN_SHARE:
            break
        if all(_overlap(box, other) <= 0.3 for other in kept):
            kept.append(box)
    return kept


def _overlap(box: tuple[int, int, int, int], other: tuple[int, int, int, int]) -> float:
    """The share of `box` that lies inside `other`."""
    x, y, w, h = box
    ox, oy, ow, oh = other
    dx = min(x + w, ox + ow) - max(x, ox)
    dy = min(y + h, oy + oh) - max(y, oy)
    return max(0, dx) * max(0, dy) / (w * h)


def stored_warnings(figures: Mapping[str, Any] | None) -> list[Any]:
    """The warnings of a stored check (Person.photo_check), as the unit reads them."""
    codes = [P(code) for code in (figures or {}).get("problems", [])]
    return [WARNINGS[code] for code in codes if code in WARNINGS]


def problem_message(problem: m.PhotoProblem, check: PhotoCheck, limits: PhotoLimits) -> Any:
    """What the unit reads: what is wrong and what to do, in the request's language."""
    if problem is P.image_too_small:
        return _l("The picture is too small (%(width)d × %(height)d pixels): at least "
                  "%(min_width)d × %(min_height)d pixels.", width=check.width,
                  height=check.height, min_width=limits.min_width,
                  min_height=limits.min_height)
    if problem is P.too_dark:
        return _l("The photo is too dark (brightness %(value)d of 255, at least %(minimum)d): "
                  "take it in good, even light.", value=round(check.luminance),
                  minimum=round(limits.min_luminance))
    if problem is P.no_face:
        return _l("No face was found: the photo must show the person's face from the front, "
                  "looking at the camera.")
    if problem is P.several_faces:
        return _l("%(count)d faces were found: the photo must show the person alone.",
                  count=check.faces)
    if problem is P.face_too_small:
        return _l("The face is too small (%(percent)d%% of the photo's height, at least "
                  "%(minimum)d%%): crop the photo closer to the head and shoulders.",
                  percent=round(100 * (check.face_ratio or 0)),
                  minimum=round(100 * limits.min_face_ratio))
    return WARNINGS[problem]
