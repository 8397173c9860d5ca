//! RED metrics layers (HTTP, gRPC, upstream), the metric catalogue, exporter
//! selection and JSON logging.

pub mod logging;
