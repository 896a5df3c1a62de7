"""The real Android client, run here: MediaPipe Tasks' `ImageClassifier` on a converted `.tflite`.

MediaPipe reads the file's standard metadata (normalisation, labels) and does its own resizing and tensor
conversion, exactly as on a phone, so a file it classifies like PyTorch does is one an app can drop in.
`mediapipe` is an optional extra (`pip install mobileprune[mediapipe]`); without it the check is skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

INSTALL = "pip install mobileprune[mediapipe]"
AGREEMENT = 0.95  # share of check images whose MediaPipe top-1 must equal the interpreter's on the same file


@dataclass
class Prediction:
    index: int
    name: str  # the class name MediaPipe read from the file's labels ("" when the file has none)
    score: float


def available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


@contextlib.contextmanager
def image_classifier(path: str | Path):
    """An open MediaPipe ImageClassifier for the file (closed on exit: its worker threads must stop)."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
    classifier = vision.ImageClassifier.create_from_options(options)
    try:
        yield classifier
    finally:
        classifier.close()


def classify(classifier, image, crop: tuple[float, float, float, float] | None = None) -> Prediction:
    """Top-1 of one image: an HxWx3 uint8 RGB array or an image file's path.

    `crop` (left, top, right, bottom, as fractions of the image) is MediaPipe's region of interest, how an
    app asks for the centre crop a model was trained with; MediaPipe then resizes the region to the input.
    """
    import mediapipe as mp
    from mediapipe.tasks.python.components.containers import rect
    from mediapipe.tasks.python.vision.core import image_processing_options

    if isinstance(image, (str, Path)):
        picture = mp.Image.create_from_file(str(image))  # MediaPipe's own decoder, as on the phone
        if picture.image_format != mp.ImageFormat.SRGB:  # grey or RGBA photos: the app hands over RGB
            picture = mp.Image(image_format=mp.ImageFormat.SRGB, data=_rgb(picture.numpy_view()))
    else:
        picture = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
    options = None
    if crop is not None:
        region = rect.RectF(left=crop[0], top=crop[1], right=crop[2], bottom=crop[3])
        options = image_processing_options.ImageProcessingOptions(region_of_interest=region)
    best = classifier.classify(picture, options).classifications[0].categories[0]
    return Prediction(best.index, best.category_name or "", float(best.score))


def centre_crop(width: int, height: int, resize: int = 256, crop: int = 224) -> tuple[float, float, float, float]:
    """The region `Resize(resize)` then `CenterCrop(crop)` keeps, as fractions of a width x height image."""
    side = min(width, height) * crop / resize
    left, top = (width - side) / 2 / width, (height - side) / 2 / height
    return left, top, 1 - left, 1 - top


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """8-bit grey (H, W or H, W, 1) or RGBA → contiguous RGB."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])
