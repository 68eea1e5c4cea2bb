//! The in-memory format of a partition ([`Rows`]) and the codecs of its
//! records ([`Codec`]), as documented in `wit/sluice.wit`.

pub mod codec;
mod rows;

pub use codec::{Codec, CodecError, Number, Numeric};
pub use rows::{Rows, RowsError, RowsIter};
