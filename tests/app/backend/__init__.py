"""The stock-analysis application's backend, as far as the tests need it: its models."""
