//! Integration tests of the storage engine, compiled into one binary.

mod columns;
mod common;
mod corruption;
mod crash;
mod model;
mod retention;
mod rollups;
mod write_path;
