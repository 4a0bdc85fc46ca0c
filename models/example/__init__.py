"""Example model: the MLP the runner template trains on 8x8 digits."""
