//! Black-box end-to-end tests (under `e2e/`) and the benchmark harness (under `bench/`).
