"""The stages that need a policy: training, evaluation, and the runner that chains them.

They sit above :mod:`trajbench.baselines` (the models they train and evaluate); everything they
build on — episode stores, the prompt builder, rollouts, metrics — lives in the core package.
"""
