"""What a lecture shows, without Qt: the presets' jobs and the explainers' numbers."""
