"""Training steps of the supernet (weights on train batches, θ on validation batches) and the
bridge from a searched supernet to the standalone child model."""

from tfnas.engine.export import copy_to_child, extract_child
from tfnas.engine.loss_scale import DynamicLossScale, loss_scale_for_policy
from tfnas.engine.steps import (make_arch_step, make_eval_step, make_search_steps,
                                make_weight_step, prepare_optimizer)
from tfnas.engine.updates import apply_gradients

__all__ = ["DynamicLossScale", "apply_gradients", "copy_to_child", "extract_child",
           "loss_scale_for_policy", "make_arch_step", "make_eval_step", "make_search_steps",
           "make_weight_step", "prepare_optimizer"]
