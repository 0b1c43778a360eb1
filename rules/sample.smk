# Rules: sample (to be written)
