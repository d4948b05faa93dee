"""The throwaway next change's contract, beside it as every migration's is."""
