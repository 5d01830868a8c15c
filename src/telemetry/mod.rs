//! `telemetry`
