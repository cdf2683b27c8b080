"""Quantization-aware training with tensorflow-model-optimization, in its own process.

tfmot 0.8 takes only tf_keras (Keras 2) models and importing it sets TF_USE_LEGACY_KERAS=1
for the whole process, so this module runs as a subprocess of `deploy.export`:

  python -m deploy.qat --model=float.keras --out=qat.tflite --dataset=mnist --steps=100

The Keras 3 model (built-in layers only, as `tfnas.nn.builder` makes them) is rebuilt layer by
layer in tf_keras from each layer's config and inbound layers, the weights are copied by layer
name, layers tfmot's default 8-bit scheme supports are annotated, `quantize_apply` inserts the
fake-quant ops, a short fine-tune adapts the weights, and the result converts to full int8.
"""

from __future__ import annotations

import inspect
import sys
import time

import numpy as np
from absl import flags

from tfnas import cli
from tfnas.errors import TfnasError

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The CLI's flags (defined only when run as a program, so the module imports cleanly)."""
    flags.DEFINE_string("model", None, "The float Keras 3 model (.keras) to quantize.")
    flags.DEFINE_string("out", None, "Where to write the int8 .tflite.")
    flags.DEFINE_string("dataset", "mnist", "Labelled data for the fine-tune (see deploy.data).")
    flags.DEFINE_string("data_dir", None, "Dataset directory, if the dataset needs one.")
    flags.DEFINE_integer("steps", 100, "Fine-tuning steps with the fake-quant ops in place.")
    flags.DEFINE_integer("batch_size", 32, "Fine-tuning batch size.")
    flags.DEFINE_float("learning_rate", 1e-4, "Fine-tuning learning rate (Adam).")
    flags.DEFINE_string("check_images", None, "A .npy of images to run the fine-tuned model "
                        "on (deploy.export's check); needs --check_logits.")
    flags.DEFINE_string("check_logits", None, "Where to save those logits (.npy).")


_DROPPED = ("dtype", "trainable")  # Keras 3 objects in the config; tf_keras defaults fit


def layer_graph(model) -> list[tuple[str, str, dict, list[str]]]:
    """(name, class, config, inbound layer names) of a Keras 3 functional model, in order."""
    graph = []
    for layer in model.layers:
        inbound = []
        if layer._inbound_nodes:
            inbound = [t._keras_history[0].name for t in layer._inbound_nodes[0].input_tensors]
        graph.append((layer.name, type(layer).__name__, layer.get_config(), inbound))
    return graph


def tf_keras_twin(graph, weights: dict[str, list[np.ndarray]]):
    """The same network in tf_keras, with the Keras 3 weights copied by layer name."""
    import tf_keras

    outputs: dict[str, object] = {}
    inputs = []
    for name, cls, config, inbound in graph:
        if cls == "InputLayer":
            shape = config.get("batch_shape") or config.get("batch_input_shape")
            outputs[name] = tf_keras.Input(batch_shape=shape, name=name)
            inputs.append(outputs[name])
            continue
        layer_cls = getattr(tf_keras.layers, cls, None)
        if layer_cls is None:
            raise TfnasError(f"layer {name} ({cls}) has no tf_keras counterpart for QAT")
        layer = layer_cls(**_tf_keras_config(layer_cls, config))
        args = [outputs[n] for n in inbound]
        outputs[name] = layer(args if len(args) > 1 else args[0])
        if weights.get(name):
            layer.set_weights(weights[name])
    last = graph[-1][0]
    return tf_keras.Model(inputs, outputs[last])


def _tf_keras_config(layer_cls, config: dict) -> dict:
    accepted = set(inspect.signature(layer_cls.__init__).parameters)
    takes_kwargs = "kwargs" in accepted
    out = {}
    for key, value in config.items():
        if key in _DROPPED or key.endswith(("_initializer", "_regularizer", "_constraint")):
            continue  # weights are copied; regularizers and constraints do not matter here
        if key in accepted or (takes_kwargs and key == "name"):
            out[key] = value
    return out


def annotate(model):
    """Annotates the layers tfmot's default 8-bit registry supports; others stay float."""
    import tensorflow_model_optimization as tfmot
    import tf_keras

    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()

    def clone(layer):
        if registry.supports(layer):
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        return layer.__class__.from_config(layer.get_config())

    annotated = tf_keras.models.clone_model(model, clone_function=clone)
    annotated.set_weights(model.get_weights())
    return tfmot.quantization.keras.quantize_apply(annotated)


def quantize_and_finetune(model_path: str, dataset: str, data_dir: str | None, steps: int,
                          batch_size: int, learning_rate: float,
                          check_images: np.ndarray | None = None
                          ) -> tuple[bytes, np.ndarray | None]:
    """The int8 .tflite, and the fine-tuned model's logits on `check_images` (if given)."""
    import keras

    float_model = keras.saving.load_model(model_path, compile=False)
    graph = layer_graph(float_model)
    weights = {layer.name: layer.get_weights() for layer in float_model.layers}
    input_shape = tuple(float_model.inputs[0].shape[1:])
    from deploy.data import load_images  # TensorFlow data, still Keras 3 here

    x, y = load_images(dataset, "train", input_shape, steps * batch_size, data_dir)
    # Another draw than the fine-tune's, and never the test split deploy.export checks on.
    calibration, _ = load_images(dataset, "train", input_shape, 200, data_dir, seed=1)

    import tensorflow as tf
    import tensorflow_model_optimization  # noqa: F401  (switches tf.keras to tf_keras)
    import tf_keras

    tf_keras.utils.set_random_seed(0)  # a repeatable fine-tune
    clock = _Clock()
    twin = tf_keras_twin(graph, weights)
    clock.say("rebuilt in tf_keras")
    qat = annotate(twin)
    clock.say("fake-quant ops inserted")
    qat.compile(optimizer=tf_keras.optimizers.Adam(learning_rate),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Built before fit: slots created in the train step's first trace make TensorFlow trace
    # it twice (as in tfnas.train; the same .tflite either way, 7 s less on fbnet).
    qat.optimizer.build(qat.trainable_variables)
    qat.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=True)
    clock.say(f"fine-tuned {len(x) // batch_size} steps")
    logits = None if check_images is None else qat.predict(check_images, verbose=0)
    spec = tf.TensorSpec((1, *input_shape), tf.float32)
    concrete = tf.function(lambda t: qat(t, training=False), autograph=False) \
        .get_concrete_function(spec)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], qat)
    from deploy.convert import configure, quiet_convert

    configure(converter, "qat", calibration)
    content = quiet_convert(converter)
    clock.say("converted")
    return content, logits


class _Clock:
    def __init__(self):
        self.start = time.time()

    def say(self, what: str) -> None:
        print(f"qat: {what} ({time.time() - self.start:.1f} s)", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    if not FLAGS.model or not FLAGS.out:
        raise TfnasError("--model and --out are required")
    if FLAGS.steps < 1 or FLAGS.batch_size < 1:
        raise TfnasError("--steps and --batch_size must be >= 1")
    from tfnas.cli import import_tensorflow
    from tfnas.io import atomic_path

    import_tensorflow()
    if bool(FLAGS.check_images) != bool(FLAGS.check_logits):
        raise TfnasError("--check_images and --check_logits go together")
    check = None
    if FLAGS.check_images:
        try:
            check = np.load(FLAGS.check_images, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise TfnasError(f"cannot read --check_images {FLAGS.check_images}: {e}") from None
    content, logits = quantize_and_finetune(FLAGS.model, FLAGS.dataset, FLAGS.data_dir,
                                            FLAGS.steps, FLAGS.batch_size, FLAGS.learning_rate,
                                            check)
    with atomic_path(FLAGS.out) as tmp:
        with open(tmp, "wb") as f:
            f.write(content)
    if logits is not None:
        with atomic_path(FLAGS.check_logits) as tmp:
            np.save(tmp, logits)
    print(f"wrote {FLAGS.out} ({len(content)} bytes)")
    return 0


if __name__ == "__main__":
    define_flags()
    cli.run(main)
