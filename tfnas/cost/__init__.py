"""Cost model: closed-form params/FLOPs per block, L x O tables, and a Keras-model counter."""
