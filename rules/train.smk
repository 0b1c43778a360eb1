# Rules: train (to be written)
