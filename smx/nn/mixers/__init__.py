"""Context mixers: SummaryMixing and the baselines it is compared with (one file each)."""
