//! The agent's sockets, end to end inside one process: a listener connection with the
//! handshake and token, events applied, the HTTP API reading them back.

mod common;

use sparkscope::agent::RunningAgent;
use sparkscope::auth::Secret;
use sparkscope::model::{lock, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Agent {
    store: Arc<Store>,
    ingest: std::net::SocketAddr,
    http: std::net::SocketAddr,
    _running: RunningAgent,
}

async fn start(token: &str) -> Agent {
    let mut cfg = common::config();
    cfg.ingest.token = Secret::new(Some(token));
    let running = common::start(cfg).await;
    Agent {
        store: running.store().clone(),
        ingest: running.addrs().ingest,
        http: running.addrs().http,
        _running: running,
    }
}

async fn handshake(
    addr: std::net::SocketAddr,
    app: &str,
    token: &str,
) -> Result<BufReader<TcpStream>, String> {
    common::listener_unchecked(addr, app, "run-1", token).await
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_get_as(addr, path, Some(common::API_TOKEN)).await
}

async fn http_get_as(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut body = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut s, &mut body)
        .await
        .expect("read");
    let code = body[9..12].parse().expect("status");
    let body = body
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached in 2 s");
}

#[tokio::test]
async fn a_wrong_token_is_refused_with_a_reason() {
    let agent = start("s3cret").await;
    let answer = handshake(agent.ingest, "local-7", "guess")
        .await
        .expect_err("refused");
    assert!(
        answer.contains("\"ok\":false") && answer.contains("token"),
        "{answer}"
    );
    assert!(agent.store.apps().is_empty());
}

#[tokio::test]
async fn events_flow_from_the_socket_to_the_api() {
    let agent = start("s3cret").await;
    let mut s = handshake(agent.ingest, "local-7", "s3cret")
        .await
        .expect("welcome");
    let lines = concat!(
        r#"{"Event":"SparkListenerJobStart","Job ID":4,"Submission Time":1795258404123,"Stage Infos":[{"Stage ID":9,"Stage Attempt ID":0,"Stage Name":"collect","Number of Tasks":3}],"Stage IDs":[9],"Properties":{"spark.job.tags":"b,a"}}"#,
        "\n",
        "garbage that is not json\n",
        r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":9,"Stage Attempt ID":0,"Stage Name":"collect","Number of Tasks":3,"Submission Time":1},"Properties":{}}"#,
        "\n",
        r#"{"Event":"SparkscopeStageProgress","stageId":9,"stageAttemptId":0,"started":3,"succeeded":1}"#,
    );
    // Split a line across writes: the reader must join it.
    let (a, b) = lines.split_at(lines.len() - 20);
    s.get_mut().write_all(a.as_bytes()).await.expect("write");
    s.get_mut().flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.get_mut().write_all(b.as_bytes()).await.expect("write");
    s.get_mut().write_all(b"\n").await.expect("write");

    let app = agent
        .store
        .get("local-7")
        .expect("app registered by its hello");
    eventually(|| lock(&app).job(4).is_some_and(|j| j.completed_tasks == 1)).await;
    {
        let a = lock(&app);
        assert!(a.is_live());
        assert_eq!(a.stats().parse_errors, 1);
        assert_eq!(a.job(4).map(|j| j.active_tasks), Some(2));
    }

    let (code, body) = http_get(agent.http, "/api/v1/applications").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let job = &v["applications"][0]["jobs"][0];
    assert_eq!(v["applications"][0]["id"], "local-7");
    assert_eq!(job["jobId"], 4);
    assert_eq!(job["jobTags"], serde_json::json!(["a", "b"]));
    assert_eq!(job["numActiveTasks"], 2);
    assert_eq!(job["submissionTime"], "2026-11-21T10:53:24.123GMT");
    assert_eq!(job["status"], "RUNNING");

    // An operator's view: without the API token (or the admin token), nothing.
    for token in [None, Some("guess")] {
        let (code, _) = http_get_as(agent.http, "/api/v1/applications", token).await;
        assert_eq!(code, 401, "token {token:?}");
    }
    let (code, _) = http_get_as(
        agent.http,
        "/api/v1/applications",
        Some(common::ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 200, "the admin token is an operator's too");
    let (code, body) = http_get(agent.http, "/api/v1/applications/nope/jobs").await;
    assert_eq!(code, 404);
    assert!(body.contains("unknown application"), "{body}");

    drop(s);
    eventually(|| !lock(&app).is_live()).await;
}

#[tokio::test]
async fn operators_read_the_drivers_log_lines_page_by_page() {
    let agent = start("s3cret").await;
    let mut s = handshake(agent.ingest, "local-8", "s3cret")
        .await
        .expect("welcome");
    for i in 0..3 {
        let line = format!(
            r#"{{"Event":"SparkscopeLogLine","Timestamp":1795258404123,"Level":"ERROR","Logger":"org.apache.spark.scheduler.TaskSetManager","Thread":"t","Message":"line {i}","Thrown":"java.lang.ArithmeticException: boom","Job Tags":"","Context":{{}}}}"#
        );
        s.get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write");
    }
    let app = agent.store.get("local-8").expect("registered");
    eventually(|| lock(&app).log_lines().count() == 3).await;

    let (code, body) = http_get(agent.http, "/api/v1/applications/local-8/logs?limit=2").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let lines = v["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["message"], "line 0");
    assert_eq!(lines[0]["level"], "ERROR");
    assert_eq!(lines[0]["thrown"], "java.lang.ArithmeticException: boom");
    assert!(
        lines[0].get("owner").is_none(),
        "nobody's line: {}",
        lines[0]
    );
    assert_eq!(v["more"], 1);
    let last = lines[1]["seq"].as_u64().expect("seq");
    let (_, body) = http_get(
        agent.http,
        &format!("/api/v1/applications/local-8/logs?since={last}"),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["lines"][0]["message"], "line 2");
    assert_eq!(v["more"], 0);

    // an operator's view only, and a bad query is answered
    let (code, _) = http_get_as(agent.http, "/api/v1/applications/local-8/logs", None).await;
    assert_eq!(code, 401);
    let (code, body) = http_get(agent.http, "/api/v1/applications/local-8/logs?since=-1").await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("since and limit"), "{body}");
    let (code, _) = http_get(agent.http, "/api/v1/applications/nope/logs").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn each_application_has_its_own_connection_and_state() {
    let agent = start("t").await;
    let mut a = handshake(agent.ingest, "app-a", "t")
        .await
        .expect("welcome");
    let mut b = handshake(agent.ingest, "app-b", "t")
        .await
        .expect("welcome");
    let job = |id: i32| {
        format!(
            "{{\"Event\":\"SparkListenerJobStart\",\"Job ID\":{id},\"Stage Infos\":[],\"Stage IDs\":[],\"Properties\":{{}}}}\n"
        )
    };
    a.get_mut()
        .write_all(job(1).as_bytes())
        .await
        .expect("write");
    b.get_mut()
        .write_all(job(2).as_bytes())
        .await
        .expect("write");
    b.get_mut()
        .write_all(b"{\"Event\":\"SparkscopeListenerStats\",\"dropped\":3}\n")
        .await
        .expect("write");
    let (app_a, app_b) = loop {
        if let (Some(x), Some(y)) = (agent.store.get("app-a"), agent.store.get("app-b")) {
            break (x, y);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eventually(|| lock(&app_a).job(1).is_some() && lock(&app_b).job(2).is_some()).await;
    eventually(|| lock(&app_b).stats().listener_dropped == 3).await;
    assert!(lock(&app_a).job(2).is_none() && lock(&app_b).job(1).is_none());
    let (_, body) = http_get(agent.http, "/api/v1/applications").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["applications"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["applications"][1]["ingest"]["listenerDropped"], 3);
}

#[tokio::test]
async fn a_connection_must_start_with_a_hello() {
    let agent = start("t").await;
    let mut s = BufReader::new(TcpStream::connect(agent.ingest).await.expect("connect"));
    s.get_mut()
        .write_all(b"{\"Event\":\"SparkListenerJobEnd\"}\n")
        .await
        .expect("write");
    let mut answer = String::new();
    s.read_line(&mut answer).await.expect("read");
    assert!(
        answer.contains("\"ok\":false") && answer.contains("SparkscopeHello"),
        "{answer}"
    );
}
