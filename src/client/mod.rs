//! The HTTP client: connections (DNS, TCP, TLS, the HTTP handshake) under a connect-rate
//! ceiling, HTTP/1.1 and HTTP/2 written and read on the socket (gRPC calls through the `h2`
//! crate), and the kernel's receive time of responses.

pub mod connection;
pub mod grpc;
/// HPACK (RFC 7541): the header compression of gapless's own HTTP/2 client.
pub mod hpack;
pub mod mux;
pub mod stamped;
pub mod tls;
pub mod wire;
