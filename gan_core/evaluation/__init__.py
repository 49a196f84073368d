"""Evaluation the bundles share: the metric registry (METRICS.md), its feature extractors, and the utility-study
helpers (arms, intervals, subsets, segmenters, the figure); each paper's own evaluation is in its bundle's scripts."""
