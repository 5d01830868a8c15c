//! `upstream`
