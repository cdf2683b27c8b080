"""Paper defaults of the proposal optimization (TensorFlow-free, so CLIs can show them)."""

from tfnas.nn.schedule import TAU_DECAY, TAU_START  # τ: 5.0, times 0.9999 every iteration

ITERATIONS = 1000  # I_sp
NUM_PROPOSALS = 8  # m
BETA = 1e-2  # weight of the orthogonality term
# Default temperature to optimize for and sample at: where the schedule stands after I_sp
# iterations (4.524), i.e. the final temperature of the proposal optimization.
DEFAULT_TAU = TAU_START * TAU_DECAY ** ITERATIONS
# Adam on the logits θ/τ (so it means the same at any τ). With 1000 iterations this balances
# precision (samples within ±5% of the targets) against diversity (distinct samples): 0.05
# gives ~99% / ~1,000 distinct of 10,000 on efficientnet, 0.03 ~94% / ~2,700 (bench/).
LEARNING_RATE = 0.035
INIT_STDDEV = 1.0  # initial logits θ/τ ~ N(0, 1): a different random start per proposal
