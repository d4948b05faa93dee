"""Contracts of the throwaway next change, written from its description, not from its SQL."""
