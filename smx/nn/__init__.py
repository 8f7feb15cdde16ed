"""Neural network components: mixers, blocks, encoders, front-ends (no Ray, MLflow or DVC here)."""
