"""Image folders: one class mapping for every split, unreadable data as one line, images PIL would spoil."""

import numpy as np
import pytest
import torch
from conftest import write_images
from PIL import Image

from mobileprune import ShrinkConfig, UserError, load_model, shrink
from mobileprune.models import resolve_spec
from mobileprune.models.labels import class_ids
from mobileprune.train.data import make_loader, open_data, open_image_folder
from mobileprune.train.loop import TrainConfig, Trainer

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def _labels(image_set) -> dict[str, int]:
    return {path.parent.name: label for path, label in image_set.samples}


def test_an_empty_class_folder_keeps_every_split_on_the_same_indices(tmp_path):
    write_images(tmp_path / "train", {"dog": (200, 0, 0), "ship": (0, 0, 200)}, 2)
    (tmp_path / "train" / "cat").mkdir()  # no images yet
    write_images(tmp_path / "val", {"cat": (0, 200, 0), "dog": (200, 0, 0), "ship": (0, 0, 200)}, 2)
    data = open_data(tmp_path, 32, MEAN, STD)
    assert data.train.classes == data.val.classes == ["cat", "dog", "ship"]
    assert _labels(data.train) == {"dog": 1, "ship": 2}
    assert _labels(data.val) == {"cat": 0, "dog": 1, "ship": 2}


def test_a_validation_class_the_training_split_lacks_is_refused(tmp_path):
    write_images(tmp_path / "train", {"dog": (200, 0, 0)}, 2)
    write_images(tmp_path / "val", {"dog": (200, 0, 0), "horse": (0, 0, 200)}, 2)
    with pytest.raises(UserError, match="class folder .*horse' is not one of the model's 1 classes"):
        open_data(tmp_path, 32, MEAN, STD)


def test_a_symlinked_copy_of_a_class_folder_is_not_an_extra_class(tmp_path):
    write_images(tmp_path, {"red": (200, 0, 0), "blue": (0, 0, 200)}, 2)
    (tmp_path / "red_again").symlink_to(tmp_path / "red")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert open_image_folder(tmp_path, 32, MEAN, STD).classes == ["blue", "red"]


def test_class_folders_map_to_the_models_class_ids_by_name(tmp_path):
    ids = class_ids(resolve_spec("mobilenet_v2"))
    write_images(tmp_path, {ids[0]: (200, 0, 0), ids[998]: (0, 0, 200)}, 1)
    images = open_image_folder(tmp_path, 32, MEAN, STD, classes=ids)
    assert len(images.classes) == 1000 and _labels(images) == {ids[0]: 0, ids[998]: 998}
    write_images(tmp_path, {"not_a_wnid": (0, 200, 0)}, 1)
    with pytest.raises(UserError, match="'.*not_a_wnid' is not one of the model's 1000 classes"):
        open_image_folder(tmp_path, 32, MEAN, STD, classes=ids)


def test_sixteen_bit_png_keeps_its_picture(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    image, _ = open_image_folder(tmp_path, 32, (0, 0, 0), (1, 1, 1))[0]
    row = image[0, 16]
    assert row.min() < 0.1 and row.max() > 0.9  # a ramp from black to white, not all white


def test_a_folder_of_only_unreadable_images_stops_with_one_line_instead_of_hanging(tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(4):
            (tmp_path / "train" / cls / f"{i}.jpg").write_bytes(b"not a jpeg")
    loaded = load_model("mobilenet_v3_small", arch_kwargs={"num_classes": 2, "width_mult": 0.25}, input_size=32)
    data = open_data(tmp_path, 32, loaded.spec.mean, loaded.spec.std)
    config = ShrinkConfig(target=0.9, allocation="uniform", schedule="oneshot", epochs=1, batch_size=4, workers=0)
    with pytest.raises(UserError, match="none of the 8 images could be read"):
        shrink(loaded, config, data)  # the calibration sample finds none
    trainer = Trainer(make_loader(data.train, 4, True, workers=0), TrainConfig())
    with pytest.raises(UserError, match="none of the 8 training images could be read"):
        trainer.train(loaded.model, 3)  # the retraining loop, which used to restart its loader forever


def test_more_classes_than_the_model_predicts_is_refused_before_any_work(tmp_path):
    write_images(tmp_path / "train", {f"c{i}": (20 * i, 0, 0) for i in range(4)}, 1)
    loaded = load_model("mobilenet_v2", arch_kwargs={"num_classes": 3, "width_mult": 0.25}, input_size=32)
    data = open_data(tmp_path, 32, loaded.spec.mean, loaded.spec.std)
    with pytest.raises(UserError, match="has 4 classes, the model predicts 3"):
        shrink(loaded, ShrinkConfig(target=0.9, allocation="uniform", epochs=1), data)
    assert torch.isfinite(loaded.model(torch.randn(1, 3, 32, 32))).all()  # untouched


def test_with_jax_loaded_workers_are_not_forked_and_give_the_same_batches(tmp_path, monkeypatch):
    """LiteRT conversion imports JAX, after which forking is unsafe: the loader must start workers another way
    and still produce exactly the seeded batches a forked (or in-process) loader gives."""
    import sys
    import types

    from mobileprune.train.data import train_transform

    write_images(tmp_path / "train", {"dog": (200, 0, 0), "ship": (0, 0, 200)}, 4)
    images = open_data(tmp_path, 32, MEAN, STD).train.with_transform(train_transform(32, MEAN, STD, 0.5))
    expected = [b.images for b in make_loader(images, 4, True, workers=0)]
    loader = make_loader(images, 4, True, workers=1)  # built before JAX is loaded, as shrink's loaders are
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    got = [b.images for b in loader]
    assert loader.multiprocessing_context.get_start_method() == "forkserver"
    assert len(got) == len(expected) and all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
