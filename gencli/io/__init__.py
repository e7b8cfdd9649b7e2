"""Images in and out of gencli: reading (files, folders, globs, ``-``), writing (numbered PNGs,
grids, GIFs, ``-``) and datasets (Fashion-MNIST/MNIST IDX files, image folders, synthetic shapes).

Images cross module boundaries as float32 tensors in [-1, 1], NCHW (CHW for one image); the
conversion to and from uint8 happens only here.
"""

from gencli.io.datasets import resolve_dataset
from gencli.io.idx import read_idx, write_idx
from gencli.io.image_folder import ImageFolderDataset
from gencli.io.images import (
    IMAGE_EXTENSIONS,
    image_size_of,
    is_image_path,
    iter_image_batches,
    list_images,
    load_image,
    resize,
    to_channels,
)
from gencli.io.named_datasets import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    DatasetInfo,
    load_fashion_mnist,
    load_idx_folder,
    load_mnist,
)
from gencli.io.synthetic import synthetic_shapes
from gencli.io.tensor_dataset import TensorImageDataset
from gencli.io.writers import (
    from_uint8,
    make_grid,
    to_uint8,
    write_animation,
    write_image_file,
    write_images,
)

__all__ = [
    "DATASETS",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "DatasetInfo",
    "ImageFolderDataset",
    "TensorImageDataset",
    "from_uint8",
    "image_size_of",
    "is_image_path",
    "iter_image_batches",
    "list_images",
    "load_fashion_mnist",
    "load_idx_folder",
    "load_image",
    "load_mnist",
    "make_grid",
    "read_idx",
    "resize",
    "resolve_dataset",
    "synthetic_shapes",
    "to_channels",
    "to_uint8",
    "write_animation",
    "write_idx",
    "write_image_file",
    "write_images",
]
