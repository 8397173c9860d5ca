"""The benchmark harness behind `tests/bench/run`."""
