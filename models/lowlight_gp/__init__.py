"""Low-light enhancement with a GP trained on k-means cluster centres (Loh, lowlight_gp)."""
