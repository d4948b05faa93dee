"""The second review's fifth contract, beside its migration as every migration's is."""
