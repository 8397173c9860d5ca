//! Protocol buffer definitions and the code tonic generates from them.
//!
//! The `.proto` sources live under `proto/`; `build.rs` compiles them at build
//! time, so the generated code can never drift from its source.

/// The demo and test upstream's `echo.v1.Echo` service.
pub mod echo {
    /// Version 1 of the echo API.
    #[allow(missing_docs, unreachable_pub, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("echo.v1");
    }
}

/// Gatehouse's own APIs.
pub mod gatehouse {
    /// The admin API.
    pub mod admin {
        /// Version 1 of the admin API.
        #[allow(missing_docs, unreachable_pub, clippy::all)]
        pub mod v1 {
            tonic::include_proto!("gatehouse.admin.v1");
        }
    }
}
