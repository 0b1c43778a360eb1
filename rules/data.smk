# Rules: data (to be written)
