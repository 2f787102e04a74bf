//! In-process backend (work in progress).
