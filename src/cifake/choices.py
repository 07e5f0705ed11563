"""The values of every choice the library offers, in a module that imports nothing: the CLI lists them in its
--help (and refuses others in its parser) without loading torch."""

OPTIMIZERS = ("adam", "adamw", "sgd")  # TrainConfig.optimizer
SCHEDULES = ("constant", "onecycle", "cosine")  # TrainConfig.schedule
BACKENDS = ("auto", "onnx", "torch")  # Detector.load
TARGETS = ("predicted", "REAL", "FAKE")  # what a Grad-CAM map explains
EXPLANATIONS = ("gradcam", "rollout", "grad-rollout", "ig")  # cifake.explain.methods
EXPLAIN_CHECKS = 200  # images of a report's sample that its faithfulness and randomisation checks use
DEVICES = ("cpu", "cuda", "mps")  # cifake generate
# Where a command runs: auto (CUDA, then MPS, else the CPU), cpu, cuda, cuda:N or mps (cifake.devices)
DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"
DEVICE_HELP = "Where to compute: auto (a CUDA GPU, then an Apple GPU, else the CPU), cpu, cuda, cuda:N or mps."
PREPROCESSING = ("resize", "crop")  # how an image becomes a model's input (cifake.data.preprocess)
COMPILE_MODES = ("off", "default", "reduce-overhead")  # TrainConfig.compile; reduce-overhead: CUDA graphs
