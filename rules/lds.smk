# Rules: lds (to be written)
