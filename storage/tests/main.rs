//! Integration tests of the storage engine, compiled into one binary.

mod alter;
mod cold;
mod columns;
mod common;
mod corruption;
mod crash;
mod delete;
mod drop;
mod lake;
mod model;
mod retention;
mod rollups;
mod write_path;
