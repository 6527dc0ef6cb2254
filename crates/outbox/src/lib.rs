//! The durable per-parent outbox (work in progress).

pub mod io;
