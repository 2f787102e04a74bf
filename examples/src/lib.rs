//! Shared code of the example programs (work in progress).
