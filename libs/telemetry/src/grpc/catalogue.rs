//! The gRPC methods the gateway knows, from configuration. Label values come
//! only from here, so a client calling made-up methods cannot add series:
//! an unknown method of a known service counts as `grpc_method="unknown"`,
//! an unknown service as `grpc_service="unknown"`.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use metrics::{Counter, Histogram};

use super::GrpcCode;
use crate::catalogue::{GRPC_HANDLED, GRPC_HANDLING, GRPC_MSG_RECEIVED, GRPC_MSG_SENT, GRPC_STARTED, OVERHEAD};
use crate::series;

/// The label value standing in for names outside the catalogue.
pub const UNKNOWN: &str = "unknown";

/// A method's streaming shape (the `grpc_type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    /// One request, one response.
    Unary,
    /// A request stream, one response.
    ClientStream,
    /// One request, a response stream.
    ServerStream,
    /// Streams both ways.
    BidiStream,
}

impl GrpcType {
    /// The label value, as go-grpc-prometheus writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unary => "unary",
            Self::ClientStream => "client_stream",
            Self::ServerStream => "server_stream",
            Self::BidiStream => "bidi_stream",
        }
    }
}

impl FromStr for GrpcType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "unary" => Ok(Self::Unary),
            "client_stream" => Ok(Self::ClientStream),
            "server_stream" => Ok(Self::ServerStream),
            "bidi_stream" => Ok(Self::BidiStream),
            _ => Err(format!(
                "{s:?} is not a gRPC method type; expected unary, client_stream, server_stream or bidi_stream"
            )),
        }
    }
}

/// Every handle of one `{grpc_service, grpc_method, grpc_type}`.
pub(crate) struct MethodSeries {
    pub(crate) started: Counter,
    pub(crate) handled: [Counter; 17],
    pub(crate) handling: Histogram,
    pub(crate) received: Counter,
    pub(crate) sent: Counter,
    pub(crate) overhead: Histogram,
}

impl MethodSeries {
    fn new(service: &str, method: &str, ty: &str) -> Arc<Self> {
        let l = [service, method, ty];
        Arc::new(Self {
            started: series::counter(&GRPC_STARTED, l),
            handled: GrpcCode::ALL.map(|c| series::counter(&GRPC_HANDLED, [service, method, ty, c.as_str()])),
            handling: series::histogram(&GRPC_HANDLING, l),
            received: series::counter(&GRPC_MSG_RECEIVED, l),
            sent: series::counter(&GRPC_MSG_SENT, l),
            overhead: series::histogram(&OVERHEAD, []),
        })
    }

    fn seed(&self) {
        for c in [&self.started, &self.received, &self.sent].into_iter().chain(&self.handled) {
            c.increment(0);
        }
    }
}

struct Service {
    methods: HashMap<Box<str>, Arc<MethodSeries>>,
    unknown: Arc<MethodSeries>,
}

/// The configured gRPC services and methods, with their cached handles.
///
/// Build it after the recorder is installed, from the config's
/// `service -> { method -> type }` (or a descriptor set), and hand it to
/// [`super::GrpcMetricsLayer`]; rebuild it on config changes.
pub struct GrpcCatalogue {
    services: HashMap<Box<str>, Service>,
    unknown: Arc<MethodSeries>,
}

impl GrpcCatalogue {
    /// A catalogue with no services: every call counts as unknown.
    pub fn new() -> Self {
        Self { services: HashMap::new(), unknown: MethodSeries::new(UNKNOWN, UNKNOWN, UNKNOWN) }
    }

    /// Adds a service (full name, e.g. `echo.v1.Echo`) and its methods.
    pub fn with_service<M: AsRef<str>>(
        mut self,
        service: &str,
        methods: impl IntoIterator<Item = (M, GrpcType)>,
    ) -> Self {
        let methods = methods
            .into_iter()
            .map(|(m, ty)| (m.as_ref().into(), MethodSeries::new(service, m.as_ref(), ty.as_str())))
            .collect();
        let unknown = MethodSeries::new(service, UNKNOWN, UNKNOWN);
        self.services.insert(service.into(), Service { methods, unknown });
        self
    }

    /// The series of the call at `path` (`/package.Service/Method`).
    pub(crate) fn lookup(&self, path: &str) -> &Arc<MethodSeries> {
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return &self.unknown;
        };
        match self.services.get(service) {
            Some(s) => s.methods.get(method).unwrap_or(&s.unknown),
            None => &self.unknown,
        }
    }

    /// Makes every series of every configured method (and the `unknown`
    /// ones) exist at zero: started, the 17 handled codes, messages and
    /// the handling histogram, as go-grpc-prometheus's `InitializeMetrics`.
    pub fn seed(&self) {
        self.unknown.seed();
        for s in self.services.values() {
            s.unknown.seed();
            s.methods.values().for_each(|m| m.seed());
        }
    }
}

impl Default for GrpcCatalogue {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for GrpcCatalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, s) in &self.services {
            map.entry(name, &s.methods.keys().collect::<Vec<_>>());
        }
        map.finish()
    }
}
