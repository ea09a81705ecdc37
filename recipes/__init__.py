"""Real tasks trained with ember, each a small folder: data, model, Hydra config, README."""
