"""TFRecord files of tf.train.Example as `tfrecord:PATTERN` datasets store them."""

from __future__ import annotations

from typing import Iterable

import tensorflow as tf


def example(encoded: bytes, label: int) -> bytes:
    """One serialized Example: image/encoded (PNG/JPEG bytes) and image/class/label."""
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded])),
        "image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))})
    ).SerializeToString()


def write_records(path: str, items: Iterable[tuple[bytes, int]]) -> None:
    """A TFRecord file of (encoded image, label) examples."""
    with tf.io.TFRecordWriter(path) as writer:
        for encoded, label in items:
            writer.write(example(encoded, int(label)))
