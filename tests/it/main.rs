//! canarist's integration tests: one binary so that it links once.
mod store;
