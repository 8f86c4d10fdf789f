//! Judging a result: the verdict (typed criteria, the exit code) and the hints (likely causes,
//! with the fix).

pub mod hints;
pub mod verdict;
