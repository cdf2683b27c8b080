"""Images for calibration, fine-tuning and the export self-check, from the project's data.

`--dataset` is a name the data pipeline knows (`mnist`, `fashion_mnist`, `tfds:NAME`,
`folder:PATH`, `tfrecord:PATTERN`) or a `.npy` file of float images [N, H, W, C] in [0, 1]
(calibration only: it has no labels).
"""

from __future__ import annotations

import numpy as np

from tfnas.errors import TfnasError


def load_images(dataset: str, split: str, input_shape: tuple[int, int, int], count: int,
                data_dir: str | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Up to `count` float32 images shaped `input_shape` (and int labels, None for .npy):
    a random draw (a function of `seed`) from a dataset's split, the first ones of a .npy."""
    if dataset.endswith(".npy"):
        return _npy_images(dataset, input_shape, count), None
    height, width, channels = input_shape
    if height != width:
        raise TfnasError(f"the data pipeline gives square images; the model input is "
                         f"{height}x{width}")
    from tfnas.data import reading

    ds = _sample(dataset, split, height, count, data_dir, seed)
    images, labels = [], []
    with reading(dataset):  # tf.data reads and decodes the files only now
        for image, label in ds.as_numpy_iterator():
            images.append(image)
            labels.append(label)
    if not images:
        raise TfnasError(f"dataset {dataset!r} split {split!r} has no images")
    x = np.stack(images).astype(np.float32)
    _check_shape(x, input_shape, f"dataset {dataset!r}")
    return x, np.asarray(labels, dtype=np.int32)


def _npy_images(path: str, input_shape: tuple[int, int, int], count: int) -> np.ndarray:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise TfnasError(f"cannot read calibration images {path}: {e}") from None
    _check_shape(x, input_shape, path)
    if not len(x):
        raise TfnasError(f"calibration images {path} hold no images")
    return x[:count].astype(np.float32)


def _check_shape(x: np.ndarray, input_shape: tuple[int, int, int], what: str) -> None:
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise TfnasError(f"{what} has images of shape {list(x.shape[1:])}; the model takes "
                         f"{list(input_shape)} (calibration data must match the model input)")


def _sample(name: str, split: str, image_size: int, count: int, data_dir: str | None,
            seed: int):
    # The project's pipeline, the one place that reads datasets. A random sample, not the
    # first images: a folder dataset lists its classes one after the other.
    from tfnas.data import sample

    try:
        return sample(name, split, image_size, count, data_dir, seed)
    except TfnasError:
        raise
    except (ValueError, KeyError) as e:
        raise TfnasError(f"cannot load dataset {name!r}: {e}") from None
