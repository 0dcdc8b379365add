//! The normalized event that every reader produces and every detector consumes.
//!
//! Architecture invariant: this crate does no I/O of its own. Readers take bytes or a
//! `BufRead` handed to them by the caller, and return events plus [`Diagnostic`]s; one bad
//! record never stops a reader.

pub mod codec;
mod event;
pub mod read;
mod value;

pub use event::{Event, Field, FieldKey, FieldLayout, Position, Product, Source};
pub use read::{Diagnostic, Format, Item};
pub use value::{Text, Value};
