"""Your own images: a folder of class subfolders (optionally train/ and test/), engine/data/imagefolder.py."""
from __future__ import annotations

from .registry import register_dataset


@register_dataset("imagefolder", num_classes=None, channels=3, size=32, aliases=("image-folder", "image_folder"),
                  order=90)
def load_folder(req):
    from .. import DataError
    from ..imagefolder import load_imagefolder

    if req.data_dir is None:
        raise DataError(
            "the imagefolder data set needs data.data_dir: point it at a folder of class subfolders "
            "(or one with train/ and test/ subfolders in that layout)"
        )
    return load_imagefolder(req.root, req.image_size or 32)
