//! Shared-memory transport backend (work in progress).
