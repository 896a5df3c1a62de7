"""App-ready .tflite: standard metadata read back with the schema Android's clients use, and MediaPipe's own
ImageClassifier loading the file and classifying like PyTorch."""

import io
import zipfile

import numpy as np
import pytest
from conftest import lively

from mobileprune import load_model
from mobileprune.export import ModelAbout, convert
from mobileprune.export.tflite_file import metadata_entry

mediapipe = pytest.importorskip("mediapipe", reason="the real-client checks need `pip install mobileprune[mediapipe]`")


def _tiny(num_classes: int | None = 10, size: int = 32):
    kwargs = {"width_mult": 0.25, **({"num_classes": num_classes} if num_classes else {})}
    loaded = load_model("mobilenet_v2", arch_kwargs=kwargs)
    loaded.spec = type(loaded.spec)(**{**loaded.spec.to_json(), "input_size": size})
    lively(loaded.model, size)
    return loaded


def _standard_metadata(path):
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    data = metadata_entry(path, "TFLITE_METADATA")
    assert data is not None and schema.ModelMetadata.ModelMetadataBufferHasIdentifier(data, 0)
    return schema.ModelMetadataT.InitFromPackedBuf(data, 0), schema


def test_standard_metadata_parses_back_with_imagenet_names_packed_in(tmp_path):
    loaded = _tiny(num_classes=None)  # the ImageNet preset: 1000 classes with known names
    about = ModelAbout("", "", version="3", author="Ada", license="Apache-2.0")
    result = convert(loaded, ["tflite"], tmp_path / "b", about=about)[0]
    assert result.ok, result
    path = tmp_path / "b" / "model.tflite"
    meta, schema = _standard_metadata(path)
    assert meta.name == b"mobilenet_v2" and b"1000 classes" in meta.description
    assert (meta.version, meta.author, meta.license, meta.minParserVersion) == (b"3", b"Ada", b"Apache-2.0", b"1.0.0")
    (subgraph,) = meta.subgraphMetadata
    (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert image.name == b"image" and image.content.contentPropertiesType == schema.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == schema.ColorSpaceType.RGB
    (unit,) = image.processUnits
    assert unit.optionsType == schema.ProcessUnitOptions.NormalizationOptions
    assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [255.0]  # the file takes 0-1 RGB
    assert list(image.stats.min) == [0.0] and list(image.stats.max) == [1.0]
    (labels_file,) = scores.associatedFiles
    assert labels_file.name == b"labels.txt" and labels_file.type == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as packed:  # the populator's layout: a zip after the model
        names = packed.read("labels.txt").decode().splitlines()
    assert len(names) == 1000 and names[:2] == ["tench", "goldfish"]
    assert (tmp_path / "b" / "labels.txt").read_text().splitlines() == names


def test_mediapipe_classifier_agrees_with_pytorch_fp32_and_with_the_interpreter_int8(tmp_path, image_folder):
    from ai_edge_litert.interpreter import Interpreter

    from mobileprune.export import mediapipe_client

    loaded = _tiny()
    labels = [f"class {i}" for i in range(10)]
    results = convert(
        loaded,
        ["tflite"],
        tmp_path / "b",
        labels=labels,
        data=image_folder,
        precisions=["fp32", "int8"],
        check_images=16,
    )
    fp32, int8 = results
    assert fp32.ok and "MediaPipe ImageClassifier top-1 = the interpreter's on 16/16 images" in fp32.check, fp32.check
    assert "class names read from the file" in fp32.check
    assert "MediaPipe ImageClassifier top-1 = the interpreter's on 16/16 images" in int8.check, int8.check
    # the int8 file (float 0-1 in, int8 inside, float out) reads in MediaPipe exactly as in the interpreter
    pixels = np.random.default_rng(0).integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8)
    interpreter = Interpreter(model_path=str(tmp_path / "b" / int8.file))
    interpreter.allocate_tensors()
    expected = []
    for image in pixels:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32) / 255)
        interpreter.invoke()
        expected.append(int(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).argmax()))
    with mediapipe_client.image_classifier(tmp_path / "b" / int8.file) as classifier:
        got = [mediapipe_client.classify(classifier, image) for image in pixels]
    assert [g.index for g in got] == expected and all(g.name == labels[g.index] for g in got)
    assert len(set(expected)) > 1  # the images really are told apart


def test_mediapipe_check_fails_a_file_whose_metadata_misleads_the_client(tmp_path, monkeypatch):
    """The check has teeth: metadata telling MediaPipe to feed 0-255 pixels to a 0-1 model is caught."""
    from mobileprune.export import tflite_format

    describe = tflite_format._describe

    def wrong_scale(request, float_input):
        info = describe(request, float_input)
        info.std = [1.0]  # MediaPipe now feeds raw 0-255 values
        return info

    monkeypatch.setattr(tflite_format, "_describe", wrong_scale)
    loaded = _tiny()
    result = convert(loaded, ["tflite"], tmp_path / "b", check_images=16)[0]
    assert result.check.startswith("passed (max |diff|")  # the graph itself is right ...
    assert not result.ok and "MediaPipe ImageClassifier top-1 = the interpreter's" in result.check  # ... the app is not


def test_client_check_is_skipped_with_a_note_without_mediapipe(tmp_path, monkeypatch):
    from mobileprune.export import mediapipe_client

    monkeypatch.setattr(mediapipe_client, "available", lambda: False)
    result = convert(_tiny(), ["tflite"], tmp_path / "b")[0]
    assert result.ok and "MediaPipe check skipped (pip install mobileprune[mediapipe])" in result.check


def test_centre_crop_region_matches_resize_then_centre_crop():
    from mobileprune.export.mediapipe_client import centre_crop

    left, top, right, bottom = centre_crop(512, 256)  # short side 256 → resize x1, crop 224 in the middle
    assert np.allclose([left * 512, top * 256, right * 512, bottom * 256], [144, 16, 368, 240])
