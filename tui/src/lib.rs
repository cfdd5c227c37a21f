//! kcdscope's terminal UI for incidents: the devices and their story step by step
//! (certificate, CRL, S4U2Self, S4U2Proxy, Exchange), the KDCs with their latency and
//! clock, the findings with their fixes, and the raw events — from a replay that can be
//! paced, paused and scrubbed, or from an event file that grows.
//!
//! The Elm pattern: `model` (state and update, pure), `view` (drawing, pure), `snapshot`
//! (what the worker takes from the correlator), `source` (the worker) and `app` (the
//! terminal).

#![forbid(unsafe_code)]

pub mod app;
pub mod filter;
pub mod model;
pub mod snapshot;
pub mod source;
pub mod text;
pub mod view;

pub use app::{run, Options};
pub use model::{Model, Speed};
pub use source::{Input, Source};
