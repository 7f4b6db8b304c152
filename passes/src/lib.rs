//! Passes (being written).
