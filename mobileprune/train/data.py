"""Images for retraining, calibration and evaluation.

`DIR` is an ImageFolder tree (`DIR/train/<class>/*.jpg`, `DIR/val/...`; `test` is accepted for `val`,
and without either a fixed 10% of train is held out). A folder of images without class folders is read
as unlabeled: enough for distillation and calibration. Unlabeled training images may come with a labelled
val/ folder: its labels then judge the fine-tune (held_out.py). Images are resized to the model's input
size, so 32×32 CIFAR images feed a 224-px ImageNet model. A corrupt image is skipped and counted, never a crash;
a folder where no image at all can be read is one clear error.

Class indices: one mapping for every split, decided before any work. With the model's class ids
(`classes`, e.g. ImageNet wnids) each class folder maps to its id's position, so a folder may hold any
subset of the classes; without them the training split's sorted class folders (empty ones included,
as torchvision's ImageFolder counts them) define the indices and the other splits map by name into it.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from ..errors import UserError
from .sampling import EpochBatches, SeededAugmentation

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}
UNLABELED = -1


class ImageSet(Dataset):
    """(path, label) samples with a transform; unreadable images come back as None."""

    def __init__(self, samples: Sequence[tuple[Path, int]], classes: Sequence[str], transform):
        self.samples = list(samples)
        self.classes = list(classes)
        self.transform = transform

    @property
    def labeled(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        try:
            with Image.open(path) as img:
                return self.transform(to_rgb(img)), label
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
            return None

    def with_transform(self, transform) -> ImageSet:
        return ImageSet(self.samples, self.classes, transform)


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit and float greyscale are scaled down first (PIL's convert would clip them to white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        import numpy as np

        pixels = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        img = Image.fromarray(np.clip(pixels / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img.convert("RGB")


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    skipped: int  # corrupt images dropped from this batch

    def pin_memory(self) -> Batch:
        """Page-locked copies, so the copy to a GPU can overlap with compute (DataLoader calls this)."""
        return Batch(self.images.pin_memory(), self.labels.pin_memory(), self.skipped)


def collate_skipping(items) -> Batch:
    good = [x for x in items if x is not None]
    skipped = len(items) - len(good)
    if not good:
        return Batch(torch.empty(0), torch.empty(0, dtype=torch.long), skipped)
    images = torch.stack([x[0] for x in good])
    labels = torch.tensor([x[1] for x in good], dtype=torch.long)
    return Batch(images, labels, skipped)


@dataclass
class DataSplits:
    train: ImageSet
    val: ImageSet | None
    root: Path
    val_source: str  # "val", "test", "held-out 10% of train", or "none"
    size: int
    mean: Sequence[float]
    std: Sequence[float]

    def calibration_set(self) -> ImageSet:
        """Training images with the deterministic eval transform (no random crops or flips)."""
        return self.train.with_transform(eval_transform(self.size, self.mean, self.std))


def train_transform(size: int, mean, std, crop_scale: float = 0.5):
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(size, scale=(crop_scale, 1.0), antialias=True),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def eval_transform(size: int, mean, std):
    """The ImageNet convention: resize to size/0.875, centre-crop (224 → Resize(256), CenterCrop(224))."""
    return transforms.Compose(
        [
            transforms.Resize(round(size / 0.875), antialias=True),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )


def open_image_folder(
    root: str | Path, size: int, mean, std, train: bool = False, classes: Sequence[str] | None = None
) -> ImageSet:
    """One folder of images (class subfolders or flat) as an ImageSet; `classes` fixes the index mapping."""
    root = _checked_dir(root)
    samples, classes = _scan(root, classes)
    if not samples:
        raise UserError(f"no images found in '{root}' (expected {', '.join(sorted(IMAGE_SUFFIXES))} files)")
    tf = train_transform(size, mean, std) if train else eval_transform(size, mean, std)
    return ImageSet(samples, classes, tf)


def open_data(
    root: str | Path,
    size: int,
    mean,
    std,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    val_classes: Sequence[str] | None = None,
) -> DataSplits:
    """Train and validation splits of `root` (see module docstring for the layout and class indices).

    `val_classes` maps a labelled val/ folder when the training images are read without labels (a flat
    folder, or `classes` left out because distillation does not use them): labelling a few validation
    photos is far cheaper than labelling the training set, and their labels then judge the fine-tune.
    """
    root = _checked_dir(root)
    train_dir = root / "train" if (root / "train").is_dir() else root
    train = open_image_folder(train_dir, size, mean, std, train=True, classes=classes)
    for name in ("val", "test"):
        if (root / name).is_dir():
            val = open_image_folder(root / name, size, mean, std, classes=train.classes or val_classes or classes)
            return DataSplits(train, val, root, name, size, mean, std)
    samples = list(train.samples)
    random.Random(seed).shuffle(samples)
    n_val = len(samples) // 10
    if n_val == 0:
        return DataSplits(train, None, root, "none", size, mean, std)
    val = ImageSet(samples[:n_val], train.classes, eval_transform(size, mean, std))
    train = ImageSet(samples[n_val:], train.classes, train.transform)
    return DataSplits(train, val, root, "held-out 10% of train", size, mean, std)


def make_loader(
    dataset: ImageSet,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    workers: int = 1,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
) -> DataLoader:
    """Batches whose order and random crops are functions of (seed, epoch, image), resumable mid-epoch and
    split across `world` processes (see sampling.py); `shuffle=False` keeps the folder order."""
    batches = EpochBatches(len(dataset), batch_size, seed, shuffle, rank, world)
    return ImageLoader(
        SeededAugmentation(dataset, seed),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_skipping,
        persistent_workers=False,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),  # else each new iterator draws from the global RNG
    )


class ImageLoader(DataLoader):
    """A DataLoader whose workers are forked (the fast default), unless JAX is loaded when it starts them.

    Converting to LiteRT (`--by latency` timing, `convert`) imports JAX, whose threads make a later
    `fork()` unsafe (JAX warns that it "will likely lead to a deadlock"). Workers then start from a fresh
    forkserver process instead: a few seconds once (the server imports this module), then as fast as a
    fork; the dataset must pickle, and a script must guard its entry point (`if __name__ == "__main__":`),
    as on macOS, where workers are never forked. Decided at each iteration, not at construction: a
    shrink run builds its loaders before the latency timing imports JAX.
    """

    def __iter__(self):
        if self.num_workers > 0 and "jax" in sys.modules:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload([__name__])  # imported once in the server, not in every worker
            self.multiprocessing_context = context
        return super().__iter__()


def seeded_sample(dataset: ImageSet, count: int, seed: int = 0) -> list[tuple[torch.Tensor, int]]:
    """Up to `count` readable (image, label) pairs of `dataset`, in a seeded random order."""
    picks = list(range(len(dataset)))
    random.Random(seed).shuffle(picks)
    items: list[tuple[torch.Tensor, int]] = []
    for i in picks:
        item = dataset[i]
        if item is not None:
            items.append((item[0], int(item[1])))
        if len(items) >= count:
            break
    return items


def calibration_batches(dataset: ImageSet, count: int, batch_size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """A fixed, seeded sample of `count` images with the eval transform, in batches."""
    images = [image for image, _ in seeded_sample(dataset, count, seed)]
    if not images:
        raise UserError(f"none of the {len(dataset)} images could be read (all corrupt or unsupported?)")
    return [torch.stack(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]


def evaluation_set(
    num_classes: int, data: DataSplits | None, eval_data: ImageSet | None
) -> tuple[ImageSet | None, str | None]:
    """The images accuracy is measured on (`eval_data`, else labelled validation images of `data`), or None
    with the reason when their classes are not the model's."""
    images = eval_data or (data.val if data and data.val and data.val.labeled else None)
    if images is not None and len(images.classes) != num_classes:
        return None, (
            f"accuracy not measured: the evaluation images have {len(images.classes)} classes, the model "
            f"predicts {num_classes}; pass --eval-data with the model's own classes"
        )
    return images, None


def noise_batches(count: int, size: int, batch_size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """Seeded standard-normal images: the data-free stand-in for calibration images."""
    g = torch.Generator().manual_seed(seed)
    sizes = [min(batch_size, count - i) for i in range(0, count, batch_size)]
    return [torch.randn(n, 3, size, size, generator=g) for n in sizes]


def _checked_dir(root: str | Path) -> Path:
    root = Path(root)
    if not root.exists():
        raise UserError(f"data folder '{root}' does not exist")
    if not root.is_dir():
        raise UserError(f"data path '{root}' is not a folder (expected an ImageFolder tree)")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"data folder '{root}' is not readable (check its permissions)")
    return root


def _scan(root: Path, classes: Sequence[str] | None = None) -> tuple[list[tuple[Path, int]], list[str]]:
    """ImageFolder layout if there are class folders with images, else a flat unlabeled folder."""
    try:
        folders = _class_folders(root)
    except PermissionError as exc:
        raise UserError(f"data folder '{root}' is not readable (check its permissions)") from exc
    files = {d.name: sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) for d in folders}
    if any(files.values()):
        names = list(classes) if classes else sorted(files)
        index = {name: i for i, name in enumerate(names)}
        unknown = sorted(n for n, found in files.items() if found and n not in index)
        if unknown:
            known = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise UserError(
                f"class folder '{root / unknown[0]}' is not one of the model's {len(names)} classes ({known}); "
                f"{len(unknown)} unknown folder(s): name class folders by the model's class ids"
            )
        samples = [(f, index[name]) for name in sorted(files) for f in files[name]]
        return samples, names
    flat = sorted(f for f in root.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    return [(f, UNLABELED) for f in flat], []


def _class_folders(root: Path) -> list[Path]:
    """Subfolders of `root`; a symlink to a folder already listed (or to an ancestor: a loop) is skipped."""
    seen: dict[Path, Path] = {}
    ancestors = {root.resolve(), *root.resolve().parents}
    for d in sorted(root.iterdir(), key=lambda d: (d.is_symlink(), d.name)):  # real folders win
        if not d.is_dir():
            continue
        real = d.resolve()
        if real in ancestors or real in seen:
            continue
        seen[real] = d
    return sorted(seen.values())
