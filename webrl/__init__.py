"""webrl: WebRL (self-evolving curriculum, outcome reward model, KL-constrained actor-critic RL)
as a distributed actor-learner system on Ray. This package holds the typed contracts, the config
and the command line; the algorithm lives in the sibling packages."""

__version__ = "0.1.0"
