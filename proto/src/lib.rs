//! sparkscope's protobuf schema, compiled to Rust: the agent's data model and update stream
//! (`sparkscope.v1`, with its proto3 JSON mapping), and the Spark Connect `Interrupt` RPC the
//! agent calls to cancel work.

pub mod sparkscope {
    pub mod v1 {
        tonic::include_proto!("sparkscope.v1");
        include!(concat!(env!("OUT_DIR"), "/sparkscope.v1.serde.rs"));
    }
}

pub mod spark {
    pub mod connect {
        tonic::include_proto!("spark.connect");
    }
}
