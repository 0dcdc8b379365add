//! The indicator matcher against naive oracles, the loaders on self-written data.

mod loaders;
mod matcher;
