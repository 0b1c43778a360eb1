# Rules: featurize (to be written)
