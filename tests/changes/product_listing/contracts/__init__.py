"""Its contract, beside its migration as every migration's is."""
