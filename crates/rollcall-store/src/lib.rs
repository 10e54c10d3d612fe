//! Durable state. STUB.
