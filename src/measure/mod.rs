//! What the load measured, in bounded memory: each request's outcome, the histograms and
//! counters, the timeline, the failure windows and gaps, and which version answered.

pub mod code;
pub mod gaps;
pub mod outcome;
pub mod recorder;
pub mod stalls;
pub mod tally;
pub mod timeline;
pub mod version;
