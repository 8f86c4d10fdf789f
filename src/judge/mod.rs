//! Judging a result: the verdict (typed criteria, the exit code) and the hints (likely causes,
//! with the fix); and two results against each other (`gapless diff`).

pub mod diff;
pub mod hints;
pub mod verdict;
