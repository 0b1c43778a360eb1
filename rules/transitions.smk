# Rules: transitions (to be written)
