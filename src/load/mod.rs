//! The load: the absolute schedule, the pacer that releases due requests, and the engine whose
//! connection workers make one attempt each.

pub mod dispatch;
pub mod engine;
pub mod schedule;
pub mod timer;
