//! `http`
