"""Data: datasets and the batches every computation reads."""
