//! sparkscope's protobuf schema, compiled to Rust: the agent's data model and update stream
//! (`sparkscope.v1`), and the Spark Connect `Interrupt` RPC the agent calls to cancel work.

pub mod sparkscope {
    pub mod v1 {
        tonic::include_proto!("sparkscope.v1");
    }
}

pub mod spark {
    pub mod connect {
        tonic::include_proto!("spark.connect");
    }
}
