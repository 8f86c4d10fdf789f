//! The HTTP client: connections (DNS, TCP, TLS, the HTTP/2 handshake) under a connect-rate
//! ceiling, HTTP/1.1 written and read on the socket, and the kernel's receive time of responses.

pub mod connection;
pub mod grpc;
/// HPACK (RFC 7541): the header compression of gapless's own HTTP/2 client.
#[cfg_attr(not(test), allow(dead_code))]
pub mod hpack;
pub mod stamped;
pub mod tls;
pub mod wire;
