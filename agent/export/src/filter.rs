//! Which events the outputs get: by event type, and findings by their least severity.

use kcd_decode::Sink;
use kcd_schema::{Event, EventType, Severity};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these event types (None: all).
    pub types: Option<Vec<EventType>>,
    /// Findings below this severity are left out (other event types are not findings and
    /// pass, unless `types` leaves them out).
    pub min_severity: Option<Severity>,
}

impl EventFilter {
    pub fn is_noop(&self) -> bool {
        self.types.is_none() && self.min_severity.is_none()
    }

    pub fn keeps(&self, e: &Event<'_>) -> bool {
        if let Some(t) = &self.types {
            if !t.contains(&e.event_type) {
                return false;
            }
        }
        match (self.min_severity, &e.finding) {
            (Some(min), Some(f)) => f.severity >= min,
            _ => true,
        }
    }
}

/// The events of `inner` that `filter` keeps.
pub struct Filtered<'a> {
    pub filter: EventFilter,
    pub inner: &'a mut dyn Sink,
    /// Events left out.
    pub skipped: u64,
}

impl Sink for Filtered<'_> {
    fn event(&mut self, e: &Event<'_>) {
        if self.filter.keeps(e) {
            self.inner.event(e);
        } else {
            self.skipped += 1;
        }
    }
}
