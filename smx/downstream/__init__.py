"""MP3S-style scoring of frozen encoders: layer weights, probes per task, metrics, baselines.

The protocol (docs/algorithm.md, "MP3S protocol"): the pre-trained encoder is frozen; each
task trains two probe heads on a learned softmax-weighted sum of all its hidden states, and
the same probes run on a randomly initialised encoder of the same architecture and on plain
fbank features.
"""
