"""A classification dataset laid out as one folder per class: ``ROOT/<class name>/<image file>``.

Classes are the sub-folders in sorted order (their index is the label); images are the files with an image
suffix, found recursively inside each class folder and sorted, so two machines listing the same tree agree on
every index. Decoding goes through :func:`visionzoo.io.decode_image` (RGB), so a file that is not an image
raises :class:`visionzoo.io.image.ImageDecodeError` naming it; the trainer catches that, skips the sample and
counts it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

# The file suffixes taken as images (compared in lower case); the formats visionzoo.io decodes.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


class ImageFolder(torch.utils.data.Dataset):
    """Images in class folders, as ``(image, class index)`` pairs.

    Args:
        root: the directory holding one folder per class.
        transform: applied to each decoded ``uint8`` ``(3, H, W)`` tensor; None returns it as is.
        classes: the class names in label order, to read a validation split with the training split's labels;
            every folder of ``root`` must be one of them (classes without a folder are allowed). None: the
            folders of ``root``, sorted.

    Attributes:
        classes: the class names; ``samples``: ``(path, class index)`` pairs; ``targets``: the indices alone.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        NotADirectoryError: ``root`` is a file.
        PermissionError: ``root`` cannot be listed.
        ValueError: ``root`` has no class folders, a class folder holds no image files, or a folder is not one of
            ``classes``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Callable[[torch.Tensor], Any] | None = None,
        *,
        classes: list[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.transform = transform
        folders = _class_folders(self.root)
        if classes is None:
            classes = folders
        unknown = sorted(set(folders) - set(classes))
        if unknown:
            raise ValueError(f"{self.root}: class folders {unknown} are not among the training classes {classes}")
        self.classes = list(classes)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.samples: list[tuple[str, int]] = []
        for name in folders:
            images = _image_files(self.root / name)
            if not images:
                raise ValueError(
                    f"class folder {self.root / name} holds no image files ({', '.join(IMAGE_SUFFIXES)}); "
                    "add images or remove the folder"
                )
            self.samples.extend((str(path), self.class_to_idx[name]) for path in images)
        self.targets = [label for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        from visionzoo.io import ImageReadMode, read_image

        path, label = self.samples[index]
        image = read_image(path, ImageReadMode.RGB, apply_exif_orientation=True)
        return (self.transform(image) if self.transform is not None else image), label

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r}, {len(self.classes)} classes, {len(self)} images)"


def _class_folders(root: Path) -> list[str]:
    if not root.exists():
        raise FileNotFoundError(f"dataset directory {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset directory {root} is a file, not a directory of class folders")
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except PermissionError:
        raise PermissionError(f"dataset directory {root} cannot be read (permission denied)") from None
    folders = [entry.name for entry in entries if entry.is_dir() and not entry.name.startswith(".")]
    if not folders:
        raise ValueError(
            f"dataset directory {root} holds no class folders; expected {root}{os.sep}<class name>{os.sep}<image>"
        )
    return folders


def _image_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for directory, subdirs, files in os.walk(folder, onerror=_raise, followlinks=True):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(Path(directory, f) for f in files if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
    return sorted(found)


def _raise(error: OSError) -> None:
    raise PermissionError(f"{error.filename} cannot be read: {error.strerror}") from None
