//! The policy against the hand-written visibility matrix.

mod matrix;
