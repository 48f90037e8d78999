//! Domain types: the only shapes in which data enters the core.
//!
//! Everything at the edge (HTTP bodies, replay files) is parsed into these types once;
//! the window store and detectors trust them and never re-check.

mod event;
mod name;

pub use event::{Event, Outcome};
pub(crate) use name::DEPENDENCY_BYTES;
pub use name::{DependencyName, Label, NameError, format_char};
