//! The WebSocket and gRPC streams against a real agent router: token, snapshot then deltas,
//! strict per-session isolation, bad frames answered, a stalled subscriber harmless to others.

mod common;

use futures_util::{SinkExt, StreamExt};
use sparkscope::agent::RunningAgent;
use sparkscope::ingest::ingest_line;
use sparkscope::model::{lock, Store};
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const S_ALICE: &str = "39ed1fc5-ed53-4117-945b-fae9e26c0ce8";
const S_BOB: &str = "5a1e2b3c-0000-4117-945b-fae9e26c0ce8";
const OP_A: &str = "95b7284b-ed00-4470-91a8-2e06100c9fd1";
const OP_B: &str = "15b7284b-ed00-4470-91a8-2e06100c9fd2";

struct Agent {
    store: Arc<Store>,
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    ingest: std::net::SocketAddr,
    _running: RunningAgent,
}

async fn start() -> Agent {
    start_with(common::config()).await
}

async fn start_with(cfg: sparkscope::agent::Config) -> Agent {
    let running = common::start(cfg).await;
    let addrs = running.addrs();
    Agent {
        store: running.store().clone(),
        http: addrs.http,
        grpc: addrs.grpc,
        ingest: addrs.ingest,
        _running: running,
    }
}

fn op_tag(user: &str, session: &str, op: &str) -> String {
    format!("SparkConnect_OperationTag_User_{user}_Session_{session}_Operation_{op}")
}

/// Feeds event-log lines to application `local-1` and wakes subscribers.
fn feed(agent: &Agent, lines: &[String]) {
    let app = agent.store.app("local-1");
    {
        let mut a = lock(&app);
        // As a listener's lines are: seen now, so the age limit leaves the application alone.
        a.seen(sparkscope::clock::now_ms());
        for l in lines {
            ingest_line(&mut a, l.as_bytes());
        }
    }
    agent.store.notify();
}

fn operation(user: &str, session: &str, op: &str, tag: &str) -> String {
    format!(
        r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted","jobTag":"{}","operationId":"{op}","eventTime":1,"sessionId":"{session}","userId":"{user}","userName":"","statementText":"range","sparkSessionTags":["{tag}"],"extraTags":{{}}}}"#,
        op_tag(user, session, op)
    )
}

fn job(id: i32, stage: i32, user: &str, session: &str, op: &str) -> String {
    format!(
        r#"{{"Event":"SparkListenerJobStart","Job ID":{id},"Submission Time":5,"Stage Infos":[{{"Stage ID":{stage},"Stage Attempt ID":0,"Stage Name":"s","Number of Tasks":4}}],"Stage IDs":[{stage}],"Properties":{{"spark.job.tags":"{}"}}}}"#,
        op_tag(user, session, op)
    )
}

fn workload(agent: &Agent) {
    feed(
        agent,
        &[
            operation("alice", S_ALICE, OP_A, "cell-a"),
            operation("bob_smith", S_BOB, OP_B, "cell-b"),
            job(1, 10, "alice", S_ALICE, OP_A),
            job(2, 20, "bob_smith", S_BOB, OP_B),
        ],
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(agent: &Agent, token: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/api/v1/stream", agent.http).into_client_request()?;
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

async fn subscribe(ws: &mut Ws, session: &str, user: &str) {
    let frame = format!(
        r#"{{"subscribe":{{"sessions":[{{"sessionId":"{session}","userId":"{user}"}}]}}}}"#
    );
    ws.send(Message::Text(frame.into())).await.expect("send");
}

async fn next_message(ws: &mut Ws) -> pb::ServerMessage {
    serde_json::from_str(&common::next_text(ws).await).expect("a ServerMessage")
}

async fn next_update(ws: &mut Ws) -> pb::Update {
    match next_message(ws).await.kind {
        Some(pb::server_message::Kind::Update(u)) => u,
        other => panic!("expected an update, got {other:?}"),
    }
}

#[tokio::test]
async fn a_subscriber_without_the_token_is_refused() {
    let agent = start().await;
    let Err(err) = connect(&agent, "nope").await else {
        panic!("a wrong token was accepted")
    };
    assert!(err.to_string().contains("401"), "{err}");
}

#[tokio::test]
async fn snapshot_then_deltas_of_only_the_followed_session() {
    let agent = start().await;
    workload(&agent);
    let mut ws = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut ws, S_ALICE, "alice").await;

    let snap = next_update(&mut ws).await;
    assert!(snap.snapshot);
    assert_eq!(
        snap.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(snap.operations.len(), 1);
    assert_eq!(snap.operations[0].operation_id, OP_A);
    assert_eq!(
        snap.stages.iter().map(|s| s.stage_id).collect::<Vec<_>>(),
        vec![10]
    );
    assert_eq!(snap.tag_groups.len(), 1);
    assert_eq!(
        (
            snap.tag_groups[0].tag.as_str(),
            snap.tag_groups[0].job_ids.clone()
        ),
        ("cell-a", vec![1])
    );
    assert_eq!(snap.applications.len(), 1);
    assert!(snap
        .jobs
        .iter()
        .all(|j| j.connect.as_ref().is_some_and(|c| c.session_id == S_ALICE)));

    // Progress on bob's job must not reach alice; progress on hers must, as a delta.
    feed(&agent, &[r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":20,"Stage Attempt ID":0,"Number of Tasks":4,"Submission Time":6},"Properties":{}}"#.to_owned()]);
    feed(&agent, &[r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":10,"Stage Attempt ID":0,"Number of Tasks":4,"Submission Time":6},"Properties":{}}"#.to_owned(),
        r#"{"Event":"SparkListenerTaskStart","Stage ID":10,"Stage Attempt ID":0,"Task Info":{}}"#.to_owned()]);
    let delta = next_update(&mut ws).await;
    assert!(!delta.snapshot);
    assert_eq!(delta.generation, snap.generation + 1);
    assert_eq!(delta.jobs.len(), 1);
    assert_eq!(delta.jobs[0].job_id, 1);
    assert_eq!(delta.jobs[0].tasks.as_ref().map(|t| t.active), Some(1));
    assert!(delta.stages.iter().all(|s| s.stage_id == 10));
    assert!(delta.operations.is_empty(), "the operation did not change");
}

#[tokio::test]
async fn the_session_id_alone_is_not_enough() {
    let agent = start().await;
    workload(&agent);
    let mut ws = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut ws, S_ALICE, "mallory").await;
    let snap = next_update(&mut ws).await;
    assert!(snap.snapshot);
    assert!(snap.jobs.is_empty() && snap.operations.is_empty() && snap.sessions.is_empty());
}

#[tokio::test]
async fn a_bad_frame_is_answered_and_the_stream_stays_open() {
    let agent = start().await;
    workload(&agent);
    let mut ws = connect(&agent, "sub").await.expect("connect");
    ws.send(Message::Text("{\"launch\":true}".into()))
        .await
        .expect("send");
    match next_message(&mut ws).await.kind {
        Some(pb::server_message::Kind::Error(e)) => assert_eq!(e.code, "bad_request"),
        other => panic!("expected an error, got {other:?}"),
    }
    ws.send(Message::Text(
        r#"{"subscribe":{"sessions":[{"userId":"alice"}]}}"#.into(),
    ))
    .await
    .expect("send");
    match next_message(&mut ws).await.kind {
        Some(pb::server_message::Kind::Error(e)) => {
            assert!(e.message.contains("sessionId"), "{e:?}")
        }
        other => panic!("expected an error, got {other:?}"),
    }
    subscribe(&mut ws, S_BOB, "bob_smith").await;
    let snap = next_update(&mut ws).await;
    assert_eq!(
        snap.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![2]
    );
}

#[tokio::test]
async fn a_stalled_subscriber_does_not_hold_back_another() {
    let agent = start().await;
    workload(&agent);
    let mut stalled = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut stalled, S_ALICE, "alice").await;
    let mut live = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut live, S_ALICE, "alice").await;
    next_update(&mut live).await;
    // Many changes; `stalled` never reads. `live` keeps seeing the newest state.
    feed(&agent, &[r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":10,"Stage Attempt ID":0,"Number of Tasks":4000,"Submission Time":6},"Properties":{}}"#.to_owned()]);
    for _ in 0..2000 {
        feed(&agent, &[r#"{"Event":"SparkListenerTaskStart","Stage ID":10,"Stage Attempt ID":0,"Task Info":{}}"#.to_owned()]);
    }
    let mut active = 0;
    for _ in 0..50 {
        let u = next_update(&mut live).await;
        if let Some(j) = u.jobs.iter().find(|j| j.job_id == 1) {
            active = j.tasks.as_ref().map_or(0, |t| t.active);
        }
        if active == 2000 {
            break;
        }
    }
    assert_eq!(active, 2000);
    drop(stalled);
}

#[tokio::test]
async fn grpc_subscribers_get_the_same_stream() {
    use sparkscope_proto::sparkscope::v1::monitor_client::MonitorClient;
    let agent = start().await;
    workload(&agent);
    let mut client = MonitorClient::connect(format!("http://{}", agent.grpc))
        .await
        .expect("connect");
    let req = pb::SubscribeRequest {
        sessions: vec![pb::SessionKey {
            session_id: S_BOB.into(),
            user_id: "bob_smith".into(),
            ..Default::default()
        }],
    };
    let Err(refused) = client.subscribe(tonic::Request::new(req.clone())).await else {
        panic!("subscribed without a token");
    };
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut authed = tonic::Request::new(req);
    authed
        .metadata_mut()
        .insert("authorization", "Bearer sub".parse().expect("metadata"));
    let mut stream = client
        .subscribe(authed)
        .await
        .expect("subscribe")
        .into_inner();
    let snap = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("in time")
        .expect("ok")
        .expect("an update");
    assert!(snap.snapshot);
    assert_eq!(
        snap.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![2]
    );
    assert_eq!(snap.tag_groups[0].tag, "cell-b");
}

async fn cancel(ws: &mut Ws, body: &str) -> pb::CancelResult {
    ws.send(Message::Text(format!(r#"{{"cancel":{body}}}"#).into()))
        .await
        .expect("send");
    loop {
        if let Some(pb::server_message::Kind::CancelResult(r)) = next_message(ws).await.kind {
            return r;
        }
    }
}

#[tokio::test]
async fn a_subscriber_may_cancel_only_what_it_follows() {
    let agent = start().await;
    workload(&agent);
    let mut ws = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut ws, S_ALICE, "alice").await;
    next_update(&mut ws).await;
    let r = cancel(
        &mut ws,
        &format!(
            r#"{{"requestId":"1","sessionId":"{S_BOB}","userId":"bob_smith","tag":"cell-b"}}"#
        ),
    )
    .await;
    assert_eq!(
        (r.request_id.as_str(), r.ok, r.code.as_str()),
        ("1", false, "forbidden")
    );
    // Alice's own session: a tag she never used, then her job (not running: no stage ran yet
    // but the job is running; the listener is not connected, so the back-channel is unavailable).
    let r = cancel(
        &mut ws,
        &format!(r#"{{"requestId":"2","sessionId":"{S_ALICE}","userId":"alice","tag":"nope"}}"#),
    )
    .await;
    assert_eq!(r.code, "not_found", "{r:?}");
    assert!(r.message.contains("nope"), "{r:?}");
    let r = cancel(
        &mut ws,
        &format!(r#"{{"requestId":"3","sessionId":"{S_ALICE}","userId":"alice","jobId":2}}"#),
    )
    .await;
    assert_eq!(r.code, "not_found", "bob's job is not alice's: {r:?}");
    // The operation is running; Spark Connect is unreachable here: a clear, quick failure.
    let r = cancel(
        &mut ws,
        &format!(r#"{{"requestId":"4","sessionId":"{S_ALICE}","userId":"alice","tag":"cell-a"}}"#),
    )
    .await;
    assert_eq!(r.code, "unavailable", "{r:?}");
    assert!(r.message.contains("127.0.0.1:9"), "{r:?}");
    // Once the operation has finished, cancelling it says so.
    feed(
        &agent,
        &[format!(
            r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationFinished","jobTag":"{}","operationId":"{OP_A}","eventTime":9}}"#,
            op_tag("alice", S_ALICE, OP_A)
        )],
    );
    let r = cancel(
        &mut ws,
        &format!(
            r#"{{"requestId":"5","sessionId":"{S_ALICE}","userId":"alice","operationId":"{OP_A}"}}"#
        ),
    )
    .await;
    assert_eq!(r.code, "finished", "{r:?}");
    assert!(r.message.contains("FINISHED"), "{r:?}");
}

#[tokio::test]
async fn a_job_cancel_reaches_the_listener_of_its_application() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let agent = start().await;
    let mut sock = common::listener(agent.ingest, "local-1", "run-1", common::LISTENER_TOKEN)
        .await
        .expect("welcome");
    let mut line = String::new();
    let events = [
        operation("alice", S_ALICE, OP_A, "cell-a"),
        job(1, 10, "alice", S_ALICE, OP_A),
    ]
    .join("\n")
        + "\n";
    sock.get_mut()
        .write_all(events.as_bytes())
        .await
        .expect("events");
    let app = loop {
        if let Some(a) = agent.store.get("local-1") {
            if lock(&a).job(1).is_some() {
                break a;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop(app);
    let mut ws = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut ws, S_ALICE, "alice").await;
    next_update(&mut ws).await;
    // The cancel is done when the listener says so: first a yes, then a no.
    for (answer, want) in [
        (r#""ok":true"#, ""),
        (
            r#""ok":false,"error":"job 1 is not running (SUCCEEDED)""#,
            "finished",
        ),
    ] {
        let frame = format!(
            r#"{{"cancel":{{"requestId":"j","sessionId":"{S_ALICE}","userId":"alice","jobId":1,"reason":"stop it"}}}}"#
        );
        ws.send(Message::Text(frame.into())).await.expect("send");
        line.clear();
        tokio::time::timeout(Duration::from_secs(3), sock.read_line(&mut line))
            .await
            .expect("in time")
            .expect("read");
        let mut cmd: serde_json::Value = serde_json::from_str(&line).expect("json");
        let id = cmd["id"].as_str().expect("a command id").to_owned();
        cmd.as_object_mut().expect("object").remove("id");
        assert_eq!(
            cmd,
            serde_json::json!({"cmd": "cancelJob", "jobId": 1, "reason": "stop it"})
        );
        let result =
            format!("{{\"Event\":\"SparkscopeCommandResult\",\"id\":\"{id}\",{answer}}}\n");
        sock.get_mut()
            .write_all(result.as_bytes())
            .await
            .expect("answer");
        let r = loop {
            if let Some(pb::server_message::Kind::CancelResult(r)) =
                next_message(&mut ws).await.kind
            {
                break r;
            }
        };
        assert_eq!(r.code, want, "{r:?}");
        if want.is_empty() {
            assert!(r.ok, "{r:?}");
            assert_eq!(r.cancelled_job_ids, vec![1]);
        } else {
            assert!(r.message.contains("not running"), "{r:?}");
        }
    }
}

#[tokio::test]
async fn operators_cancel_over_http_with_the_admin_token_only() {
    let agent = start().await;
    workload(&agent);
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/cancel", agent.http);
    let body = format!(r#"{{"sessionId":"{S_BOB}","tag":"cell-b"}}"#);
    let r = client
        .post(&url)
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = client
        .post(&url)
        .bearer_auth("sub")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        401,
        "the subscriber token is not the admin token"
    );
    // With the admin token the user id may be left out; Spark Connect is unreachable here.
    let r = client
        .post(&url)
        .bearer_auth("admin")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["code"], "unavailable");
    let r = client
        .post(&url)
        .bearer_auth("admin")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    let unknown = r#"{"sessionId":"00000000-0000-0000-0000-000000000000","jobId":3}"#;
    let r = client
        .post(&url)
        .bearer_auth("admin")
        .body(unknown)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn subscribers_past_the_bound_are_refused_until_a_place_frees() {
    use sparkscope_proto::sparkscope::v1::monitor_client::MonitorClient;
    let mut cfg = common::config();
    cfg.stream.max_subscribers = 1;
    let agent = start_with(cfg).await;
    let first = connect(&agent, "sub").await.expect("the first is admitted");
    let err = connect(&agent, "sub")
        .await
        .expect_err("the second is refused");
    assert!(err.to_string().contains("503"), "{err}");
    let mut client = MonitorClient::connect(format!("http://{}", agent.grpc))
        .await
        .expect("connect");
    let mut req = tonic::Request::new(pb::SubscribeRequest {
        sessions: vec![pb::SessionKey {
            session_id: S_ALICE.into(),
            user_id: "alice".into(),
            ..Default::default()
        }],
    });
    req.metadata_mut()
        .insert("authorization", "Bearer sub".parse().expect("metadata"));
    let status = client
        .subscribe(req)
        .await
        .expect_err("refused over gRPC too");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    drop(first);
    let mut admitted = false;
    for _ in 0..100 {
        if connect(&agent, "sub").await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(admitted, "the place of the first subscriber was given back");
}

#[tokio::test]
async fn cancels_past_the_bound_are_answered_unavailable() {
    // Spark Connect's address accepts and never answers: the first cancel stays in flight.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut cfg = common::config();
    cfg.control.spark_connect = Some(format!("http://{}", silent.local_addr().expect("addr")));
    cfg.control.max_in_flight = 1;
    let agent = start_with(cfg).await;
    workload(&agent);
    let mut ws = connect(&agent, "sub").await.expect("connect");
    subscribe(&mut ws, S_ALICE, "alice").await;
    next_update(&mut ws).await;
    let cancel = |id: &str| {
        format!(
            r#"{{"cancel":{{"requestId":"{id}","sessionId":"{S_ALICE}","userId":"alice","tag":"cell-a"}}}}"#
        )
    };
    ws.send(Message::Text(cancel("r1").into()))
        .await
        .expect("send");
    let _held = tokio::time::timeout(Duration::from_secs(3), silent.accept())
        .await
        .expect("the first cancel reaches Spark Connect's address");
    ws.send(Message::Text(cancel("r2").into()))
        .await
        .expect("send");
    let result = loop {
        if let Some(pb::server_message::Kind::CancelResult(r)) = next_message(&mut ws).await.kind {
            break r;
        }
    };
    assert_eq!(result.request_id, "r2");
    assert_eq!(result.code, "unavailable");
    assert!(result.message.contains("too many"), "{}", result.message);
}

/// Users identified by a token file: a user follows and cancels only its own sessions, on
/// either transport; a token that is not in the file is refused.
#[tokio::test]
async fn a_user_sees_and_cancels_only_its_own_sessions() {
    use sparkscope_proto::sparkscope::v1::monitor_client::MonitorClient;
    let (agent, dir) = start_with_users().await;
    let file_again = dir.path().join("tokens");

    let err = connect(&agent, "not-in-the-file")
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("401"), "{err}");

    let mut alice = connect(&agent, ALICE_TOKEN).await.expect("alice");
    // Bob's session, named with its real ids: refused, and nothing of it is sent.
    subscribe(&mut alice, S_BOB, "bob_smith").await;
    match next_message(&mut alice).await.kind {
        Some(pb::server_message::Kind::Error(e)) => {
            assert_eq!(e.code, "forbidden", "{e:?}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let r = cancel(
        &mut alice,
        &format!(
            r#"{{"requestId":"x","sessionId":"{S_BOB}","userId":"bob_smith","tag":"cell-b"}}"#
        ),
    )
    .await;
    assert_eq!(r.code, "forbidden");
    // Her own session: followed, and only its jobs come.
    subscribe(&mut alice, S_ALICE, "alice").await;
    let snap = next_update(&mut alice).await;
    assert!(snap
        .jobs
        .iter()
        .all(|j| j.connect.as_ref().is_some_and(|c| c.user_id == "alice")));
    assert_eq!(snap.jobs.len(), 1);

    // gRPC: the same rules.
    let mut client = MonitorClient::connect(format!("http://{}", agent.grpc))
        .await
        .expect("connect");
    let req = |session: &str, user: &str, token: &str| {
        let mut r = tonic::Request::new(pb::SubscribeRequest {
            sessions: vec![pb::SessionKey {
                session_id: session.into(),
                user_id: user.into(),
                ..Default::default()
            }],
        });
        let value = format!("Bearer {token}").parse().expect("metadata");
        r.metadata_mut().insert("authorization", value);
        r
    };
    let denied = client
        .subscribe(req(S_BOB, "bob_smith", ALICE_TOKEN))
        .await
        .expect_err("not hers");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let unknown = client
        .subscribe(req(S_BOB, "bob_smith", "forged"))
        .await
        .expect_err("not a user");
    assert_eq!(unknown.code(), tonic::Code::Unauthenticated);
    let mut own = client
        .subscribe(req(S_BOB, "bob_smith", BOB_TOKEN))
        .await
        .expect("his")
        .into_inner();
    let first = own.message().await.expect("update").expect("open");
    assert!(first
        .jobs
        .iter()
        .all(|j| j.connect.as_ref().is_some_and(|c| c.user_id == "bob_smith")));

    // The file is read again when it changes: a revoked token stops working, at once for the
    // streams already open with it; a new one works.
    private_file(&file_again, &format!("bob_smith {BOB_TOKEN_2}\n"));
    let changed = tokio::time::Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match alice.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("alice's stream closed within a second of the change")
    .expect("with a close frame");
    assert!(closed.reason.contains("revoked"), "{closed:?}");
    let ended = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match own.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("bob's old stream ended within a second")
    .expect("with a status");
    assert_eq!(ended.code(), tonic::Code::Unauthenticated, "{ended:?}");
    println!(
        "streams of revoked tokens closed {:?} after the change",
        changed.elapsed()
    );
    let err = connect(&agent, ALICE_TOKEN).await.expect_err("revoked");
    assert!(err.to_string().contains("401"), "{err}");
    let mut bob = connect(&agent, BOB_TOKEN_2).await.expect("the new token");
    subscribe(&mut bob, S_BOB, "bob_smith").await;
    assert!(next_update(&mut bob).await.snapshot);
}

/// An agent that knows alice and bob_smith by their tokens (a token file, no shared token), fed
/// the workload; the file lives in the returned directory.
async fn start_with_users() -> (Agent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tokens");
    private_file(
        &file,
        &format!("alice {ALICE_TOKEN}\nbob_smith {BOB_TOKEN}\n"),
    );
    let mut cfg = common::config();
    cfg.stream.auth.shared = None;
    cfg.stream.auth.tokens_file = Some(file);
    let agent = start_with(cfg).await;
    workload(&agent);
    (agent, dir)
}

const ALICE_TOKEN: &str = "alice-token-0123456789";
const BOB_TOKEN: &str = "bob-token-0123456789abc";
const BOB_TOKEN_2: &str = "bob-token-2-0123456789ab";

/// A token file as the agent takes it: readable by its owner only.
fn private_file(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Spark's REST task list for one stage, as a stand-in: the longest tasks for
/// `sortBy=-runtime`, the failed ones for `status=failed`, the running ones for
/// `status=running`; and the thread dump of task 4 on executor 2.
async fn fake_spark_rest() -> std::net::SocketAddr {
    use axum::extract::{Path, RawQuery};
    use axum::routing::get;
    let frames: Vec<String> =
        std::iter::once("java.base@17/java.lang.Thread.sleep(Native Method)\n".to_owned())
            .chain((0..60).map(|i| format!("Frame{i}.run(Frame.java:{i})")))
            .collect();
    let threads = get(move |RawQuery(q): RawQuery| async move {
        assert_eq!(q.as_deref(), Some("taskId=4&executorId=2"));
        axum::Json(serde_json::json!({"threadId": 88,
            "threadName": "Executor task launch worker for task 0.0 in stage 10.0 (TID 4)",
            "threadState": "TIMED_WAITING", "stackTrace": {"elems": frames},
            "blockedByLock": "", "holdingLocks": []}))
    });
    let app =
        axum::Router::new()
            .route("/api/v1/applications/local-1/threads", threads)
            .route(
                "/api/v1/applications/{app}/stages/{stage}/{attempt}/taskList",
                get(
                    |Path((app, stage, attempt)): Path<(String, i32, i32)>,
                     RawQuery(q): RawQuery| async move {
                        assert_eq!((app.as_str(), stage, attempt), ("local-1", 10, 0));
                        let q = q.unwrap_or_default();
                        let task = |id: i64, launch: &str, duration: i64, status: &str| {
                            serde_json::json!({"taskId": id, "index": id, "attempt": 0,
                        "launchTime": launch, "duration": duration, "executorId": "1",
                        "host": "10.0.0.9", "status": status, "speculative": false,
                        "schedulerDelay": 3, "gettingResultTime": 0,
                        "taskMetrics": {"executorDeserializeTime": 7}})
                        };
                        let body = if q.contains("status=failed") {
                            serde_json::json!([task(
                                3,
                                "2026-11-21T10:53:24.500GMT",
                                100,
                                "FAILED"
                            )])
                        } else if q.contains("status=running") {
                            let mut t4 = task(4, "2026-11-21T10:53:24.050GMT", 0, "RUNNING");
                            t4["executorId"] = serde_json::json!("2");
                            serde_json::json!([
                                task(5, "2026-11-21T10:53:24.600GMT", 0, "RUNNING"),
                                t4
                            ])
                        } else {
                            assert!(
                                q.contains("sortBy=-runtime") && q.contains("length=200"),
                                "{q}"
                            );
                            serde_json::json!([
                                task(2, "2026-11-21T10:53:24.200GMT", 900, "SUCCESS"),
                                task(1, "2026-11-21T10:53:24.100GMT", 500, "SUCCESS"),
                            ])
                        };
                        axum::Json(body)
                    },
                ),
            );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn the_notebook_view_gets_context_samples_hints_failures_and_tasks() {
    use sparkscope::model::event::ListenerInfo;
    use sparkscope::upkeep::sample_all;
    let rest = fake_spark_rest().await;
    let mut cfg = common::config();
    cfg.stream.ui_link_template = Some("https://hub.example/user/{user}/proxy/{port}".into());
    cfg.spark_api.spark_ui = Some(format!("http://{rest}"));
    let agent = start_with(cfg).await;
    {
        let app = agent.store.app("local-1");
        let hello = ListenerInfo {
            app_id: "local-1".into(),
            coalesced_tasks: true,
            ui_url: "http://10.1.2.3:4041".into(),
            master: "local-cluster[2,2,1024]".into(),
            ..ListenerInfo::default()
        };
        lock(&app).listener_connected(1, hello, [127, 0, 0, 1].into());
    }
    workload(&agent);
    feed(
        &agent,
        &[
            r#"{"Event":"SparkListenerExecutorAdded","Timestamp":1,"Executor ID":"1","Executor Info":{"Host":"10.0.0.9","Total Cores":2}}"#.into(),
            r#"{"Event":"SparkListenerExecutorAdded","Timestamp":1,"Executor ID":"2","Executor Info":{"Host":"10.0.0.8","Total Cores":2}}"#.into(),
            r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":10,"Stage Attempt ID":0,"Stage Name":"s","Number of Tasks":4,"Submission Time":6}}"#.into(),
            r#"{"Event":"SparkscopeStageProgress","time":7,"stageId":10,"stageAttemptId":0,"started":4,"succeeded":1,"failed":1,"executorRunTime":600,"jvmGcTime":60,"memoryBytesSpilled":1024,"diskBytesSpilled":512,"durationMinMs":500,"durationMedianMs":500,"durationMaxMs":500}"#.into(),
            r#"{"Event":"SparkListenerTaskEnd","Stage ID":10,"Stage Attempt ID":0,"Task End Reason":{"Reason":"ExceptionFailure","Class Name":"java.lang.ArithmeticException","Description":"/ by zero","Stack Trace":[],"Full Stack Trace":"java.lang.ArithmeticException: / by zero\n\tat Foo.bar(Foo.java:1)"},"Task Info":{"Task ID":3,"Index":3,"Attempt":0,"Executor ID":"1","Host":"10.0.0.9","Finish Time":8}}"#.into(),
        ],
    );
    // The agent samples busy slots every stream interval, when they changed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !sample_all(&agent.store, i64::MAX, 6000),
        "nothing changed since: no sample"
    );

    let mut ws = connect(&agent, common::SUBSCRIBER_TOKEN).await.expect("ws");
    subscribe(&mut ws, S_ALICE, "alice").await;
    let snap = next_update(&mut ws).await;
    let app = &snap.applications[0];
    assert_eq!(app.master, "local-cluster[2,2,1024]");
    assert_eq!(app.ui_link, "https://hub.example/user/{user}/proxy/4041");
    let samples = app.task_samples.as_ref().expect("samples");
    let first_at = samples.start_ms;
    assert_eq!(
        (
            samples.active_tasks.last(),
            samples.total_cores.last(),
            samples.executors.last()
        ),
        (Some(&2), Some(&4), Some(&2))
    );
    let stage = snap
        .stages
        .iter()
        .find(|s| s.stage_id == 10)
        .expect("stage 10");
    assert_eq!(
        (
            stage.gc_time_ms,
            stage.memory_spilled_bytes,
            stage.disk_spilled_bytes
        ),
        (60, 1024, 512)
    );
    assert_eq!(stage.task_durations.expect("durations").median_ms, 500);
    let f = stage.first_failure.as_ref().expect("the failure");
    assert_eq!(
        (
            f.exception_class.as_str(),
            f.message.as_str(),
            f.executor_id.as_str(),
            f.index
        ),
        ("java.lang.ArithmeticException", "/ by zero", "1", 3)
    );

    // Only new samples follow in a delta.
    feed(
        &agent,
        &[r#"{"Event":"SparkscopeStageProgress","time":9,"stageId":10,"stageAttemptId":0,"started":4,"succeeded":3,"failed":1}"#.into()],
    );
    let mut samples = None;
    for _ in 0..20 {
        let delta = next_update(&mut ws).await;
        if let Some(s) = delta
            .applications
            .first()
            .and_then(|a| a.task_samples.clone())
        {
            samples = Some(s);
            break;
        }
    }
    let samples = samples.expect("a delta with the new sample");
    assert!(samples.start_ms > first_at, "only samples not sent before");
    assert_eq!(&samples.active_tasks[..], &[0][..]);

    // The stage's tasks, from Spark's REST API: the longest and the failed, by launch.
    let ask = |session: &str, user: &str, stage: i32| {
        format!(
            r#"{{"tasks":{{"requestId":"t1","appId":"local-1","stageId":{stage},"attemptId":0,"sessionId":"{session}","userId":"{user}"}}}}"#
        )
    };
    let answer = |m: pb::ServerMessage| match m.kind {
        Some(pb::server_message::Kind::Tasks(t)) => Some(t),
        _ => None,
    };
    ws.send(Message::Text(ask(S_ALICE, "alice", 10).into()))
        .await
        .expect("send");
    let list = loop {
        if let Some(t) = answer(next_message(&mut ws).await) {
            break t;
        }
    };
    assert!(list.ok, "{list:?}");
    assert_eq!(list.total, 4);
    let ids: Vec<i64> = list.tasks.iter().map(|t| t.task_id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(list.tasks[1].compute_ms, 900 - 3 - 7);
    // Bob's session is not followed; Bob's stage is not in Alice's session.
    ws.send(Message::Text(ask(S_BOB, "bob_smith", 20).into()))
        .await
        .expect("send");
    let refused = loop {
        if let Some(t) = answer(next_message(&mut ws).await) {
            break t;
        }
    };
    assert_eq!(refused.code, "forbidden");
    ws.send(Message::Text(ask(S_ALICE, "alice", 20).into()))
        .await
        .expect("send");
    let missing = loop {
        if let Some(t) = answer(next_message(&mut ws).await) {
            break t;
        }
    };
    assert_eq!(missing.code, "not_found");

    // "Is it stuck?": the thread of the longest-running task (the first launched), bounded.
    let stuck = ask(S_ALICE, "alice", 10).replace(
        r#""userId":"alice""#,
        r#""userId":"alice","threadDump":true"#,
    );
    ws.send(Message::Text(stuck.into())).await.expect("send");
    let list = loop {
        if let Some(t) = answer(next_message(&mut ws).await) {
            break t;
        }
    };
    let dump = list.thread_dump.expect("a thread dump");
    assert_eq!((dump.task_id, dump.executor_id.as_str()), (4, "2"));
    assert_eq!(dump.thread_state, "TIMED_WAITING");
    assert_eq!(dump.frames.len(), 40);
    assert_eq!(dump.more_frames, 21);
    assert!(
        dump.frames[0].contains("java.lang.Thread.sleep"),
        "{:?}",
        dump.frames[0]
    );
    assert!(dump.error.is_empty() && dump.running_ms > 0, "{dump:?}");
    // Asked for Bob's stage, nothing is dumped.
    let foreign = ask(S_ALICE, "alice", 20).replace(
        r#""userId":"alice""#,
        r#""userId":"alice","threadDump":true"#,
    );
    ws.send(Message::Text(foreign.into())).await.expect("send");
    let refused = loop {
        if let Some(t) = answer(next_message(&mut ws).await) {
            break t;
        }
    };
    assert_eq!(refused.code, "not_found");
    assert!(refused.thread_dump.is_none());
}

/// Another application (whoever holds a listener token can make one) announces a session that
/// a real application reported first: its jobs never reach that session's subscribers, and a
/// cancel of the session's job goes to the real application's listener only.
#[tokio::test]
async fn a_session_belongs_to_the_application_that_reported_it_first() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let agent = start().await;
    let session = |app: &str| {
        format!(
            r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted","sessionId":"{S_ALICE}","userId":"alice","eventTime":1}}"#
        ) + "\n"
            + &[
                operation(
                    "alice",
                    S_ALICE,
                    if app == "real" { OP_A } else { OP_B },
                    "cell",
                ),
                job(
                    1,
                    10,
                    "alice",
                    S_ALICE,
                    if app == "real" { OP_A } else { OP_B },
                ),
            ]
            .join("\n")
            + "\n"
    };
    let mut real = common::listener(agent.ingest, "app-real", "run-1", common::LISTENER_TOKEN)
        .await
        .expect("welcome");
    real.get_mut()
        .write_all(session("real").as_bytes())
        .await
        .expect("events");
    let has_job = |id: &str| {
        agent
            .store
            .get(id)
            .is_some_and(|a| lock(&a).job(1).is_some())
    };
    while !has_job("app-real") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fake = common::listener(agent.ingest, "app-fake", "run-2", common::LISTENER_TOKEN)
        .await
        .expect("welcome");
    fake.get_mut()
        .write_all(session("fake").as_bytes())
        .await
        .expect("events");
    while !has_job("app-fake") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(agent.store.owner_of(S_ALICE).as_deref(), Some("app-real"));

    let mut ws = connect(&agent, common::SUBSCRIBER_TOKEN).await.expect("ws");
    subscribe(&mut ws, S_ALICE, "alice").await;
    let snap = next_update(&mut ws).await;
    let apps: BTreeSet<&str> = snap.jobs.iter().map(|j| j.app_id.as_str()).collect();
    assert_eq!(apps, BTreeSet::from(["app-real"]), "{snap:?}");
    assert!(snap.operations.iter().all(|o| o.operation_id == OP_A));

    let frame = format!(
        r#"{{"cancel":{{"requestId":"j","sessionId":"{S_ALICE}","userId":"alice","jobId":1}}}}"#
    );
    ws.send(Message::Text(frame.into())).await.expect("send");
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(3), real.read_line(&mut line))
        .await
        .expect("the real application's listener gets the command")
        .expect("read");
    assert!(line.contains("cancelJob"), "{line}");
    let mut other = String::new();
    let nothing = tokio::time::timeout(Duration::from_millis(300), fake.read_line(&mut other));
    assert!(nothing.await.is_err(), "the other application got {other}");
}

/// A listener may announce any UI address; only an http or https one becomes a link.
#[tokio::test]
async fn a_ui_address_that_is_no_http_url_never_becomes_a_link() {
    use sparkscope::ingest::protocol::{connect_listener, AgentCheck, Hello};
    use tokio::io::AsyncWriteExt;
    let agent = start().await;
    let token = sparkscope::auth::Secret::new(Some(common::LISTENER_TOKEN)).expect("token");
    let hello = Hello {
        app_id: "app-js".into(),
        run_id: "run-1".into(),
        task_events: "coalesced".into(),
        ui_url: "javascript:alert(document.domain)//http://x".into(),
        ..Hello::default()
    };
    let mut sock = connect_listener(
        agent.ingest,
        hello,
        &token,
        AgentCheck::Verify,
        Duration::from_secs(5),
    )
    .await
    .expect("welcome");
    let events = [
        format!(
            r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectSessionStarted","sessionId":"{S_ALICE}","userId":"alice","eventTime":1}}"#
        ),
        operation("alice", S_ALICE, OP_A, "cell"),
    ]
    .join("\n")
        + "\n";
    sock.get_mut()
        .write_all(events.as_bytes())
        .await
        .expect("events");
    while agent.store.owner_of(S_ALICE).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let app = agent.store.get("app-js").expect("the application");
    assert_eq!(lock(&app).info().ui_url, "", "the address is dropped");
    let mut ws = connect(&agent, common::SUBSCRIBER_TOKEN).await.expect("ws");
    subscribe(&mut ws, S_ALICE, "alice").await;
    let snap = next_update(&mut ws).await;
    let a = snap
        .applications
        .iter()
        .find(|a| a.id == "app-js")
        .expect("the application record");
    assert_eq!(a.ui_link, "");
}

/// A web page's WebSocket carries its origin: refused unless the operator lists it. The token
/// goes in the Authorization header only, never in the query string.
#[tokio::test]
async fn web_pages_of_other_origins_and_tokens_in_the_query_are_refused() {
    let mut cfg = common::config();
    cfg.stream.allowed_origins = vec!["https://hub.example".to_owned()];
    let agent = start_with(cfg).await;
    let with_origin = |origin: &str| {
        let mut req = format!("ws://{}/api/v1/stream", agent.http)
            .into_client_request()
            .expect("request");
        let headers = req.headers_mut();
        headers.insert(
            "authorization",
            format!("Bearer {}", common::SUBSCRIBER_TOKEN)
                .parse()
                .expect("header"),
        );
        headers.insert("origin", origin.parse().expect("header"));
        req
    };
    let refused = tokio_tungstenite::connect_async(with_origin("https://evil.example")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 403)
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    assert!(
        tokio_tungstenite::connect_async(with_origin("https://hub.example"))
            .await
            .is_ok()
    );
    // A token in the query string is no credential: the stream waits for a handshake, and a
    // request instead is refused.
    let url = format!(
        "ws://{}/api/v1/stream?token={}",
        agent.http,
        common::SUBSCRIBER_TOKEN
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
    subscribe(&mut ws, S_ALICE, "alice").await;
    match next_message(&mut ws).await.kind {
        Some(pb::server_message::Kind::Error(e)) => assert_eq!(e.code, "unauthorized"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A notebook holding one of the agent's own tokens never sends it: it names it by its key id,
/// checks the agent's proof, then proves it too. A wrong proof, an unknown key id or a request
/// before the handshake gets nothing.
#[tokio::test]
async fn a_notebook_proves_its_token_without_sending_it() {
    use sparkscope::auth::Secret;
    use sparkscope::publish::stream::handshake::{agent_proof, notebook_proof};
    use sparkscope::publish::stream::identity::key_id;
    let agent = start().await;
    workload(&agent);
    let url = format!("ws://{}/api/v1/stream", agent.http);
    let token = Secret::new(Some(common::SUBSCRIBER_TOKEN)).expect("token");
    let hello = pb::StreamHello {
        key_id: key_id(common::SUBSCRIBER_TOKEN),
        nonce: "00112233445566778899aabbccddeeff".to_owned(),
    };
    let send =
        |m: pb::ClientMessage| Message::Text(serde_json::to_string(&m).expect("json").into());
    let hello_msg = pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Hello(hello.clone())),
    };

    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
    ws.send(send(hello_msg.clone())).await.expect("hello");
    let Some(pb::server_message::Kind::Challenge(c)) = next_message(&mut ws).await.kind else {
        panic!("expected a challenge");
    };
    assert_eq!(
        c.proof,
        agent_proof(&token, &c.nonce, &hello),
        "the agent proved it"
    );
    let proof = pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Proof(pb::StreamProof {
            proof: notebook_proof(&token, &c.nonce, &hello),
        })),
    };
    ws.send(send(proof)).await.expect("proof");
    let Some(pb::server_message::Kind::Welcome(w)) = next_message(&mut ws).await.kind else {
        panic!("expected a welcome");
    };
    assert_eq!(w.user_id, "", "the shared token names no user");
    subscribe(&mut ws, S_ALICE, "alice").await;
    assert_eq!(next_update(&mut ws).await.jobs.len(), 1);

    // A proof made without the token: refused, and the stream closed.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
    ws.send(send(hello_msg)).await.expect("hello");
    let Some(pb::server_message::Kind::Challenge(c)) = next_message(&mut ws).await.kind else {
        panic!("expected a challenge");
    };
    let guess = Secret::new(Some("a-guess-0123456789abcdef")).expect("guess");
    let forged = pb::ClientMessage {
        kind: Some(pb::client_message::Kind::Proof(pb::StreamProof {
            proof: notebook_proof(&guess, &c.nonce, &hello),
        })),
    };
    ws.send(send(forged)).await.expect("proof");
    let Some(pb::server_message::Kind::Error(e)) = next_message(&mut ws).await.kind else {
        panic!("expected a refusal");
    };
    assert_eq!(e.code, "unauthorized", "{e:?}");

    // An unknown key id gets no challenge; neither does a request before the handshake.
    for first in [
        pb::ClientMessage {
            kind: Some(pb::client_message::Kind::Hello(pb::StreamHello {
                key_id: key_id("someone-else-0123456789"),
                nonce: hello.nonce.clone(),
            })),
        },
        serde_json::from_str(&format!(
            r#"{{"subscribe":{{"sessions":[{{"sessionId":"{S_ALICE}","userId":"alice"}}]}}}}"#
        ))
        .expect("subscribe"),
    ] {
        let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.expect("ws");
        ws.send(send(first)).await.expect("first frame");
        let Some(pb::server_message::Kind::Error(e)) = next_message(&mut ws).await.kind else {
            panic!("expected a refusal");
        };
        assert_eq!(e.code, "unauthorized", "{e:?}");
    }
}

async fn my_work(ws: &mut Ws, id: &str) -> pb::MyWork {
    let frame = format!(r#"{{"myWork":{{"requestId":"{id}"}}}}"#);
    ws.send(Message::Text(frame.into())).await.expect("send");
    loop {
        match next_message(ws).await.kind {
            Some(pb::server_message::Kind::MyWork(w)) if w.request_id == id => return w,
            Some(pb::server_message::Kind::Error(e)) => panic!("refused: {e:?}"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_user_sees_its_own_cell_runs_across_sessions_labelled_by_its_kernels() {
    let (agent, _dir) = start_with_users().await;

    let mut alice = connect(&agent, ALICE_TOKEN).await.expect("alice");
    // Her kernel labels her tag; a label for Bob's session is refused and kept nowhere.
    let label = |session: &str, user: &str, tag: &str, cell: &str| {
        format!(
            r#"{{"label":{{"sessionId":"{session}","userId":"{user}","tag":"{tag}","notebook":"work/etl.ipynb","cellId":"{cell}","executionCount":7}}}}"#
        )
    };
    alice
        .send(Message::Text(
            label(S_ALICE, "alice", "cell-a", "c-1").into(),
        ))
        .await
        .expect("send");
    alice
        .send(Message::Text(
            label(S_BOB, "bob_smith", "cell-b", "stolen").into(),
        ))
        .await
        .expect("send");
    match next_message(&mut alice).await.kind {
        Some(pb::server_message::Kind::Error(e)) => assert_eq!(e.code, "forbidden", "{e:?}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let w = my_work(&mut alice, "1").await;
    assert_eq!(w.applications.len(), 1, "{w:?}");
    assert_eq!(w.applications[0].id, "local-1");
    let [run] = w.runs.as_slice() else {
        panic!("one run of hers: {w:?}")
    };
    assert_eq!(
        (
            run.user_id.as_str(),
            run.tag.as_str(),
            run.notebook.as_str()
        ),
        ("alice", "cell-a", "work/etl.ipynb")
    );
    assert_eq!((run.cell_id.as_str(), run.execution_count), ("c-1", 7));
    assert_eq!(
        (run.state.as_str(), run.jobs, run.jobs_running),
        ("running", 1, 1)
    );
    assert_eq!(run.tasks_total, 4);

    // Bob's own view has his run, unlabelled (his tag is no notebook's), by its operation.
    let mut bob = connect(&agent, BOB_TOKEN).await.expect("bob");
    let w = my_work(&mut bob, "2").await;
    let [run] = w.runs.as_slice() else {
        panic!("one run of his: {w:?}")
    };
    assert_eq!((run.user_id.as_str(), run.tag.as_str()), ("bob_smith", ""));
    assert_eq!(run.operation_ids, vec![OP_B.to_owned()]);
    assert!(run.notebook.is_empty());

    // Her job ends, then her operation: the run is finished, with its outcome.
    feed(
        &agent,
        &[
            r#"{"Event":"SparkListenerJobEnd","Job ID":1,"Completion Time":9,"Job Result":{"Result":"JobSucceeded"}}"#.to_owned(),
        ],
    );
    assert_eq!(
        my_work(&mut alice, "2b").await.runs[0].state,
        "running",
        "its operation runs"
    );
    feed(
        &agent,
        &[format!(
            r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationFinished","jobTag":"{}","operationId":"{OP_A}","eventTime":12}}"#,
            op_tag("alice", S_ALICE, OP_A)
        )],
    );
    let w = my_work(&mut alice, "3").await;
    assert_eq!(w.runs.len(), 1, "{w:?}");
    assert_eq!(
        (w.runs[0].state.as_str(), w.runs[0].end_time_ms),
        ("succeeded", Some(12))
    );

    // Seeing her work is no licence to stop it: a cancel needs the session followed (the sidebar
    // follows it first), and his she may not follow at all.
    let own = cancel(
        &mut alice,
        &format!(
            r#"{{"requestId":"c1","sessionId":"{S_ALICE}","userId":"alice","tag":"cell-a","appId":"local-1"}}"#
        ),
    )
    .await;
    assert_eq!(own.code, "forbidden", "{own:?}");
    let his = cancel(
        &mut alice,
        &format!(
            r#"{{"requestId":"c2","sessionId":"{S_BOB}","userId":"bob_smith","tag":"cell-b"}}"#
        ),
    )
    .await;
    assert_eq!(his.code, "forbidden", "{his:?}");
}

async fn remember(ws: &mut Ws, body: &str) -> pb::PreviousRun {
    ws.send(Message::Text(format!(r#"{{"fingerprint":{body}}}"#).into()))
        .await
        .expect("send");
    loop {
        match next_message(ws).await.kind {
            Some(pb::server_message::Kind::PreviousRun(p)) => return p,
            Some(pb::server_message::Kind::Error(e)) => panic!("refused: {e:?}"),
            _ => continue,
        }
    }
}

fn fingerprint(id: &str, user: &str, cell: &str, input: i64) -> String {
    format!(
        r#"{{"requestId":"{id}","sessionId":"{S_ALICE}","userId":"{user}","notebook":"work/etl.ipynb","cellId":"{cell}","tag":"t-{id}","startMs":"1000","endMs":"3000","inputBytes":"{input}","joins":["SortMergeJoin"],"stages":[{{"stageId":3,"name":"count at <stdin>:1","durationMs":"1800","tasks":4,"inputBytes":"{input}"}}],"state":"succeeded"}}"#
    )
}

#[tokio::test]
async fn a_rerun_gets_its_cells_previous_run_across_a_restart_and_only_its_users() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("tokens");
    private_file(
        &file,
        &format!("alice {ALICE_TOKEN}\nbob_smith {BOB_TOKEN}\n"),
    );
    let history = dir.path().join("state").join("runs.jsonl");
    let config = || {
        let mut cfg = common::config();
        cfg.stream.auth.shared = None;
        cfg.stream.auth.tokens_file = Some(file.clone());
        cfg.stream.run_history_file = Some(history.display().to_string());
        cfg
    };
    let agent = start_with(config()).await;
    let mut alice = connect(&agent, ALICE_TOKEN).await.expect("alice");
    let first = remember(&mut alice, &fingerprint("1", "alice", "c-1", 100)).await;
    assert_eq!((first.request_id.as_str(), first.code.as_str()), ("1", ""));
    assert!(first.previous.is_none(), "the cell's first run: {first:?}");
    let second = remember(&mut alice, &fingerprint("2", "alice", "c-1", 400)).await;
    let prev = second.previous.expect("the first run");
    assert_eq!((prev.tag.as_str(), prev.input_bytes), ("t-1", 100));
    assert_eq!(prev.stages[0].name, "count at <stdin>:1");
    assert_eq!(prev.joins, vec!["SortMergeJoin".to_owned()]);

    // Bob may not read or overwrite her cells; a fingerprint without its cell is refused.
    let mut bob = connect(&agent, BOB_TOKEN).await.expect("bob");
    let stolen = remember(&mut bob, &fingerprint("3", "alice", "c-1", 1)).await;
    assert_eq!(stolen.code, "forbidden", "{stolen:?}");
    assert!(stolen.previous.is_none());
    let own = remember(&mut bob, &fingerprint("4", "bob_smith", "c-1", 9)).await;
    assert!(own.previous.is_none(), "his cell c-1 is not hers: {own:?}");
    let bad = remember(&mut alice, &fingerprint("5", "alice", "", 1)).await;
    assert_eq!(bad.code, "bad_request", "{bad:?}");

    // The agent restarts: her cell's last run is still there (written at shutdown).
    drop((alice, bob));
    let Agent { _running, .. } = agent;
    _running.shutdown().await;
    let text = std::fs::read_to_string(&history).expect("the history was written");
    assert_eq!(text.lines().count(), 2, "{text}");
    let agent = start_with(config()).await;
    let mut alice = connect(&agent, ALICE_TOKEN).await.expect("alice again");
    let third = remember(&mut alice, &fingerprint("6", "alice", "c-1", 1600)).await;
    let prev = third.previous.expect("kept across the restart");
    assert_eq!((prev.tag.as_str(), prev.input_bytes), ("t-2", 400));
}
