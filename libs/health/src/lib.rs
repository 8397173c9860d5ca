//! Liveness and readiness checks, drain state and the `grpc.health.v1` bridge.
