"""Face blurring for exports, with OpenCV's bundled frontal-face Haar cascade (offline).

The cascade misses profiles and small or occluded faces; the export records how many faces it
blurred so a reviewer can judge whether that is enough. A better detector can replace
`detect_faces` without touching the export.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

CASCADE = "haarcascade_frontalface_default.xml"


@lru_cache(maxsize=1)
def _cascade():
    import cv2  # imported on first use: OpenCV is slow to import

    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + CASCADE)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {CASCADE} could not be loaded from {cv2.data.haarcascades}")
    return cascade


def detect_faces(img: Image.Image) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, width, height) in pixels of an RGB image."""
    import cv2

    gray = cv2.cvtColor(np.asarray(img.convert("RGB")), cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)  # the cascade was trained on contrast-normalized faces
    min_side = max(24, min(img.size) // 20)  # ignore specks smaller than 5% of the image
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return [tuple(int(v) for v in box) for box in found]


def blur_faces(img: Image.Image) -> tuple[Image.Image, int]:
    """A copy of `img` with every detected face Gaussian-blurred, and the number of faces."""
    import cv2

    boxes = detect_faces(img)
    if not boxes:
        return img, 0
    pixels = np.array(img.convert("RGB"))  # a writable copy, (height, width, 3) uint8
    for x, y, w, h in boxes:
        kernel = max(w, h) // 2 | 1  # odd, about half the face: features become unreadable
        pixels[y:y + h, x:x + w] = cv2.GaussianBlur(pixels[y:y + h, x:x + w], (kernel, kernel), 0)
    return Image.fromarray(pixels), len(boxes)
