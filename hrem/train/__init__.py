"""hrem.train: the HREM training loop (TrainConfig, Trainer) and its assembly from a card (build_trainer).

Import the submodules directly (`from hrem.train.loop import Trainer`); this package file stays light.
"""
