//! Targets gapless can start itself: the built-in server and the embedded demo cluster.

pub mod accept;
pub mod demo;
pub mod serve;
