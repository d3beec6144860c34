"""Test harness: real engines started as processes on free ports, and the named test doubles."""
