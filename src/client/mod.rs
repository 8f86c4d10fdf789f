//! The HTTP client: connections (DNS, TCP, TLS, the HTTP handshake) under a connect-rate
//! ceiling, HTTP/1.1 and HTTP/2 (gRPC unary calls too) written and read on the socket, and the
//! kernel's receive time of responses. Only the long-lived gRPC stream probes use the `h2` crate.

pub mod connection;
pub mod grpc;
/// HPACK (RFC 7541): the header compression of gapless's own HTTP/2 client.
pub mod hpack;
pub mod mux;
pub mod stamped;
pub mod tls;
pub mod wire;
