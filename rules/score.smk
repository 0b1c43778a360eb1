# Rules: score (to be written)
