"""Under pytest-xdist (``make test`` runs two workers on the 2-core CI machine) each worker computes with one
thread, so the workers share the cores instead of each oversubscribing them."""

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
