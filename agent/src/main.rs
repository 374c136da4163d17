//! The `sparkscope` command (`cli`): `serve` runs the agent beside a Spark Connect server,
//! `server` runs both on this machine, `replay` reads Spark event logs through the same pipeline.

mod cli;

fn main() -> anyhow::Result<()> {
    cli::main()
}
