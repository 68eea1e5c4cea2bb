//! The in-memory format of a partition ([`Rows`]), the codecs of its
//! records ([`Codec`]) and where a record's key goes ([`partitioner`]), as
//! documented in `wit/sluice.wit`.

pub mod codec;
pub mod partitioner;
mod rows;

pub use codec::{Codec, CodecError, Number, Numeric};
pub use partitioner::{KeyGroups, Partitioner};
pub use rows::{Rows, RowsError, RowsIter};
