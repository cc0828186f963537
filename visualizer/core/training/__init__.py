"""Training: masked fine-tuning, evaluation, Lottery Ticket IMP, sparse training, experiments."""
