//! The diagnosis on a thread of its own: the decoder's thread copies each event into a
//! batch (a few small copies, no allocation) and the correlator consumes whole batches, so
//! on a machine with two cores diagnosis costs the decoder little wall time. Batches go
//! back to the decoder for reuse, and at most `IN_FLIGHT` wait, which bounds the memory.
//! With a single CPU to run on (taskset, a container's quota) the copies would only add
//! work, so the correlator then runs inline.

use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

use kcd_correlate::Correlator;
use kcd_schema::{Event, EventBatch};

const BATCH: usize = 1024;
const IN_FLIGHT: usize = 4;

pub enum Diagnosis {
    Inline(Box<Correlator>),
    Threaded(Box<Threaded>),
}

pub struct Threaded {
    current: EventBatch,
    full: Option<SyncSender<EventBatch>>,
    empty: Receiver<EventBatch>,
    worker: JoinHandle<Correlator>,
}

impl Diagnosis {
    pub fn start(correlator: Correlator) -> std::io::Result<Self> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(match cpus {
            1 => Diagnosis::Inline(Box::new(correlator)),
            _ => Diagnosis::Threaded(Box::new(Threaded::start(correlator)?)),
        })
    }

    pub fn event(&mut self, e: &Event<'_>) {
        match self {
            Diagnosis::Inline(c) => c.event(e),
            Diagnosis::Threaded(t) => t.event(e),
        }
    }

    /// Everything sent: the correlator, finished, or a message if its thread failed.
    pub fn finish(self) -> Result<Correlator, String> {
        match self {
            Diagnosis::Inline(mut c) => {
                c.finish();
                Ok(*c)
            }
            Diagnosis::Threaded(t) => t.finish(),
        }
    }
}

impl Threaded {
    fn start(mut correlator: Correlator) -> std::io::Result<Self> {
        let (full, full_rx) = mpsc::sync_channel::<EventBatch>(IN_FLIGHT);
        let (empty_tx, empty) = mpsc::sync_channel::<EventBatch>(IN_FLIGHT + 2);
        let worker = std::thread::Builder::new().name("diagnosis".into()).spawn(move || {
            for mut batch in full_rx {
                for e in batch.iter() {
                    correlator.event(&e);
                }
                batch.clear();
                // The decoder may have finished and stopped taking batches back.
                let _ = empty_tx.try_send(batch);
            }
            correlator.finish();
            correlator
        })?;
        Ok(Threaded { current: EventBatch::default(), full: Some(full), empty, worker })
    }

    fn event(&mut self, e: &Event<'_>) {
        self.current.push(e);
        if self.current.len() >= BATCH {
            self.send();
        }
    }

    fn send(&mut self) {
        let next = self.empty.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.current, next);
        if let Some(tx) = &self.full {
            // Fails only when the worker is gone, which `finish` reports.
            let _ = tx.send(batch);
        }
    }

    fn finish(mut self) -> Result<Correlator, String> {
        if !self.current.is_empty() {
            self.send();
        }
        drop(self.full.take());
        self.worker.join().map_err(|_| "the diagnosis thread failed; the findings are lost (please report this as a bug)".to_string())
    }
}
