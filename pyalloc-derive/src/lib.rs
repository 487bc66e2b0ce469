//! `#[derive(FreeListed)]` for pyalloc (layer 3). Not yet implemented.
