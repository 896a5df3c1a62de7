"""Standard TFLite Metadata (the `TFLITE_METADATA` entry) for an image classifier, written from the schema.

MediaPipe Tasks' ImageClassifier, ML Kit custom models and Android Studio's model binding read the
preprocessing and the class names of a `.tflite` from this entry, not from anything mobileprune-specific.
The maintained writer ships inside `mediapipe` (`tasks.python.metadata.metadata_writers`), but its PyPI wheel
(1.2.2) cannot import it: the writer needs a native module (`_pywrap_metadata_version`) the wheel leaves out.
tflite-support, the older writer, stopped in 2023 (protobuf<4, no wheels for new Pythons). So this module
builds the flatbuffer itself with `flatbuffers` (already a dependency of ai-edge-litert), using the field
slots of `metadata_schema.fbs`, and packs the labels file the way the schema's populator does: as a zip
archive appended to the model, which the runtime ignores and the Tasks libraries open by name.

Only the tables an image classifier needs are written; the slot numbers below are the schema's.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

import flatbuffers

from .base import ModelAbout

NAME = "TFLITE_METADATA"  # the Model.metadata entry readers look for
IDENTIFIER = b"M001"  # the metadata buffer's file identifier
MIN_PARSER_VERSION = "1.0.0"  # every field written here exists since the first metadata parser
LABELS_FILE = "labels.txt"

# union / enum values of metadata_schema.fbs
_IMAGE_PROPERTIES, _FEATURE_PROPERTIES = 2, 1  # ContentProperties
_NORMALIZATION_OPTIONS = 1  # ProcessUnitOptions
_RGB = 1  # ColorSpaceType
_TENSOR_AXIS_LABELS = 2  # AssociatedFileType


@dataclass
class ImageClassifierInfo:
    """What an app's classifier needs to know; `mean`/`std` are in the input tensor's own value units."""

    about: ModelAbout  # name, description, version, author, license
    mean: list[float] | None = None  # None: the input is quantized (the app feeds raw integer pixels)
    std: list[float] | None = None
    value_min: list[float] = field(default_factory=lambda: [0.0])  # ValueRange of the input tensor (Stats)
    value_max: list[float] = field(default_factory=lambda: [1.0])
    labels: list[str] | None = None
    input_name: str = "image"
    output_name: str = "probability"


def metadata_buffer(info: ImageClassifierInfo) -> bytes:
    """The `ModelMetadata` flatbuffer (identifier M001) describing one image input and one score output."""
    b = flatbuffers.Builder(1024)
    input_tensor = _input_tensor(b, info)
    output_tensor = _output_tensor(b, info)
    subgraph = _table(
        b,
        10,
        [
            (2, "offset", _offsets(b, [input_tensor])),  # input_tensor_metadata
            (3, "offset", _offsets(b, [output_tensor])),  # output_tensor_metadata
        ],
    )
    strings = [(slot, b.CreateString(text)) for slot, text in _model_strings(info) if text]
    model = _table(
        b,
        8,
        [*((slot, "offset", value) for slot, value in strings), (3, "offset", _offsets(b, [subgraph]))],
    )
    b.Finish(model, file_identifier=IDENTIFIER)
    return bytes(b.Output())


def labels_archive(labels: list[str]) -> bytes:
    """The zip the populator appends after the model: one `labels.txt`, a class name per line."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return out.getvalue()


def _model_strings(info: ImageClassifierInfo) -> list[tuple[int, str]]:
    a = info.about
    return [(0, a.name), (1, a.description), (2, a.version), (4, a.author), (5, a.license), (7, MIN_PARSER_VERSION)]


def _input_tensor(b: flatbuffers.Builder, info: ImageClassifierInfo) -> int:
    image_properties = _table(b, 2, [(0, "int8", _RGB)])  # color_space
    content = _table(b, 3, [(0, "uint8", _IMAGE_PROPERTIES), (1, "offset", image_properties)])
    units = []
    if info.mean is not None and info.std is not None:
        mean, std = _floats(b, info.mean), _floats(b, info.std)
        options = _table(b, 2, [(0, "offset", mean), (1, "offset", std)])
        units.append(_table(b, 2, [(0, "uint8", _NORMALIZATION_OPTIONS), (1, "offset", options)]))
    stats = _table(b, 2, [(0, "offset", _floats(b, info.value_max)), (1, "offset", _floats(b, info.value_min))])
    slots = [
        (0, "offset", b.CreateString(info.input_name)),
        (1, "offset", b.CreateString("RGB image to classify")),
        (3, "offset", content),
        (5, "offset", stats),
    ]
    if units:
        slots.append((4, "offset", _offsets(b, units)))
    return _table(b, 7, slots)


def _output_tensor(b: flatbuffers.Builder, info: ImageClassifierInfo) -> int:
    content = _table(b, 3, [(0, "uint8", _FEATURE_PROPERTIES), (1, "offset", _table(b, 2, []))])
    slots = [
        (0, "offset", b.CreateString(info.output_name)),
        (1, "offset", b.CreateString("Scores of the classes (logits)")),
        (3, "offset", content),
    ]
    if info.labels:
        label_file = _table(
            b,
            5,
            [
                (0, "offset", b.CreateString(LABELS_FILE)),
                (1, "offset", b.CreateString("Class names, one per output index")),
                (2, "int8", _TENSOR_AXIS_LABELS),
            ],
        )
        slots.append((6, "offset", _offsets(b, [label_file])))
    return _table(b, 7, slots)


def _table(b: flatbuffers.Builder, fields: int, slots: list[tuple[int, str, int]]) -> int:
    """One table from (slot, kind, value) triples; children (strings, vectors, tables) must exist already."""
    b.StartObject(fields)
    for slot, kind, value in slots:
        if kind == "offset":
            b.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "int8":
            b.PrependInt8Slot(slot, value, 0)
        else:
            b.PrependUint8Slot(slot, value, 0)
    return b.EndObject()


def _offsets(b: flatbuffers.Builder, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for item in reversed(items):
        b.PrependUOffsetTRelative(item)
    return b.EndVector()


def _floats(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for value in reversed(values):
        b.PrependFloat32(float(value))
    return b.EndVector()
