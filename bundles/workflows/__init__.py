"""The functions that the bundles' configs call for preparation, inference and evaluation."""
