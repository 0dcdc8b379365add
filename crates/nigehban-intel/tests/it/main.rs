//! The indicator matcher against naive oracles, the loaders on self-written data.

mod corpus;
mod loaders;
mod matcher;
