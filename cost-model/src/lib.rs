//! Cost model (being written).
