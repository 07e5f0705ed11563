"""Training: the loop (cifake.training.loop), what each step sees (augment), the state a run resumes from
(checkpoint), the moving average of the weights (ema), and the one TrainConfig every run records (config).

The package face imports nothing, so that reading TrainConfig (the CLI builds its options from it) loads no torch.
"""
