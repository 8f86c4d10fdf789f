//! The terminal while a run lasts: one stderr writer for step output and the live progress line.

pub mod console;
pub mod progress;
