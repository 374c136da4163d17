//! `sparkscope cancel`: an operator's cancel through a running agent's HTTP API.

use anyhow::{bail, Context};
use clap::Args;
use std::time::Duration;

#[derive(Args)]
pub struct CancelArgs {
    /// The agent's HTTP address.
    #[arg(
        long,
        default_value = "http://127.0.0.1:4740",
        env = "SPARKSCOPE_AGENT_URL"
    )]
    agent: String,
    /// The agent's --admin-token.
    #[arg(long, env = "SPARKSCOPE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
    /// Spark Connect session id.
    #[arg(long)]
    session: String,
    /// The session's user id; looked up from the session when left out.
    #[arg(long, default_value = "")]
    user: String,
    #[command(flatten)]
    target: CancelTarget,
    /// Reason recorded by Spark.
    #[arg(long, default_value = "cancelled by an operator through sparkscope")]
    reason: String,
}

#[derive(Args)]
#[group(required = true, multiple = false)]
struct CancelTarget {
    /// Every running operation with this client tag (a notebook cell run).
    #[arg(long)]
    tag: Option<String>,
    /// One operation.
    #[arg(long)]
    operation: Option<String>,
    /// One job, through the listener.
    #[arg(long)]
    job: Option<i32>,
}

pub async fn run(args: CancelArgs) -> anyhow::Result<()> {
    let t = &args.target;
    let mut body = serde_json::json!({
        "requestId": "cli",
        "sessionId": args.session,
        "userId": args.user,
        "reason": args.reason,
    });
    if let Some(tag) = &t.tag {
        body["tag"] = tag.clone().into();
    } else if let Some(op) = &t.operation {
        body["operationId"] = op.clone().into();
    } else if let Some(job) = t.job {
        body["jobId"] = job.into();
    }
    let url = format!("{}/api/v1/cancel", args.agent.trim_end_matches('/'));
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(&args.admin_token)
        .json(&body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .with_context(|| format!("cannot reach the agent at {url}"))?;
    let status = resp.status();
    let v: serde_json::Value = resp
        .json()
        .await
        .context("the agent's answer is not JSON")?;
    let msg = v["message"]
        .as_str()
        .or(v["error"].as_str())
        .unwrap_or("")
        .to_owned();
    if !status.is_success() {
        bail!("{msg} ({status})");
    }
    println!("{msg}");
    for id in v["interruptedOperationIds"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!("interrupted operation {}", id.as_str().unwrap_or_default());
    }
    for id in v["cancelledJobIds"].as_array().into_iter().flatten() {
        println!("cancelled job {id}");
    }
    Ok(())
}
