//! Where the state leaves the agent: the JSON API (shaped like Spark's monitoring REST API), the
//! WebSocket and gRPC streams of followed sessions, and the protobuf views of `sparkscope.v1`.

pub mod follow;
pub mod grpc;
pub mod http;
pub mod proto;
pub mod rest;
pub mod ws;
