"""Training recipes: the Ray Train worker loop, checkpoints and MLflow tracking."""
