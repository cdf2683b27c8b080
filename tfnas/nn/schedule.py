"""HourNAS's Gumbel temperature schedule, shared by the supernet's sampling, the proposals
and the search flags (TensorFlow-free, so CLIs can show it without loading TensorFlow)."""

TAU_START = 5.0  # τ at the first iteration
TAU_DECAY = 0.9999  # τ's multiplier per iteration
