//! Where the state leaves the agent: the JSON API (shaped like Spark's monitoring REST API) and
//! the protobuf views of `sparkscope.v1`.

pub mod http;
pub mod proto;
pub mod rest;
