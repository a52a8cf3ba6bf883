//! What the HTTP/2 parser produces besides HTTP exchanges: gRPC calls. Apart from the
//! parser because [`Exchange`](crate::Exchange) holds it.
use crate::chunk::Role;

/// A gRPC status code (`grpc-status`), by the names gRPC gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrpcStatus {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl GrpcStatus {
    const BY_CODE: [GrpcStatus; 17] = [
        Self::Ok,
        Self::Cancelled,
        Self::Unknown,
        Self::InvalidArgument,
        Self::DeadlineExceeded,
        Self::NotFound,
        Self::AlreadyExists,
        Self::PermissionDenied,
        Self::ResourceExhausted,
        Self::FailedPrecondition,
        Self::Aborted,
        Self::OutOfRange,
        Self::Unimplemented,
        Self::Internal,
        Self::Unavailable,
        Self::DataLoss,
        Self::Unauthenticated,
    ];

    /// A code outside gRPC's 17 is `UNKNOWN`, as gRPC's own libraries read it.
    pub fn from_code(code: u32) -> Self {
        usize::try_from(code)
            .ok()
            .and_then(|code| Self::BY_CODE.get(code))
            .copied()
            .unwrap_or(Self::Unknown)
    }

    /// The `rpc_response_status_code` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Cancelled => "CANCELLED",
            Self::Unknown => "UNKNOWN",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::DataLoss => "DATA_LOSS",
            Self::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// A gRPC call, from its request's headers to its response's trailers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrpcExchange {
    pub role: Role,
    /// `/package.Service/Method`, or `_OTHER` for a path that is not one.
    pub method: String,
    pub status: GrpcStatus,
    pub duration_ns: u64,
    /// Client side only: the `:authority` the call was sent to, possibly with a port.
    pub authority: Option<String>,
}
