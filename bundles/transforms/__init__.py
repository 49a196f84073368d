"""MONAI transforms of the bundles (array transform + dictionary twin): SUV, MIP, CT intensity, VOI crop, lungs."""
