"""smx: cheap self-supervised speech pre-training with SummaryMixing."""

__version__ = "0.1.0"
