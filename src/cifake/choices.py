"""The values of every choice the library offers, in a module that imports nothing: the CLI lists them in its
--help (and refuses others in its parser) without loading torch."""

OPTIMIZERS = ("adam", "adamw", "sgd")  # TrainConfig.optimizer
SCHEDULES = ("constant", "onecycle")  # TrainConfig.schedule
BACKENDS = ("auto", "onnx", "torch")  # Detector.load
TARGETS = ("predicted", "REAL", "FAKE")  # what a Grad-CAM map explains
DEVICES = ("cpu", "cuda", "mps")  # cifake generate
