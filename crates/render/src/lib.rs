//! Mail rendering (work in progress).
