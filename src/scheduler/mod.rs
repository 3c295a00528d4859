//! Gathering frames from many sessions into device batches. `queue` holds the rules as a
//! plain, unit-tested state; the worker that owns the device and the async front door that
//! feeds it come with the server.

pub mod queue;
