//! A graceful shutdown with everything in use: a listener connected, a WebSocket and a gRPC
//! subscriber following a session, and cancels under way on both the stream and the operators'
//! HTTP endpoint, sent to a Spark Connect address that accepts connections and never answers.
//! Every cancel gets an answer, every subscriber is told, the listener's connection is closed,
//! and the agent's ports close, all within the grace period.

mod common;

use futures_util::{SinkExt, StreamExt};
use sparkscope::agent::Drained;
use sparkscope_proto::sparkscope::v1 as pb;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const SESSION: &str = "39ed1fc5-ed53-4117-945b-fae9e26c0ce8";
const OP: &str = "95b7284b-ed00-4470-91a8-2e06100c9fd1";

fn lines() -> String {
    let tag = format!("SparkConnect_OperationTag_User_alice_Session_{SESSION}_Operation_{OP}");
    [
        format!(r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted","jobTag":"{tag}","operationId":"{OP}","eventTime":1,"sessionId":"{SESSION}","userId":"alice","statementText":"range","sparkSessionTags":["cell-1"]}}"#),
        format!(r#"{{"Event":"SparkListenerJobStart","Job ID":3,"Submission Time":5,"Stage Infos":[{{"Stage ID":4,"Stage Attempt ID":0,"Number of Tasks":2}}],"Stage IDs":[4],"Properties":{{"spark.job.tags":"{tag}"}}}}"#),
        String::new(),
    ]
    .join("\n")
}

/// Accepts connections and holds them without a word, counting them.
async fn silent_server() -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<TcpStream>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            if tx.send(s).await.is_err() {
                break;
            }
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn shutdown_answers_cancels_tells_subscribers_and_closes_connections() {
    let (silent, mut held) = silent_server().await;
    let mut cfg = common::config();
    cfg.control.spark_connect = Some(format!("http://{silent}"));
    cfg.shutdown_grace = Duration::from_secs(5);
    let agent = common::start(cfg).await;
    let addrs = agent.addrs();

    // A listener, with a running operation of alice's.
    let mut listener = common::listener(addrs.ingest, "local-1", "run-1", common::LISTENER_TOKEN)
        .await
        .expect("welcome");
    listener
        .get_mut()
        .write_all(lines().as_bytes())
        .await
        .expect("events");

    // A WebSocket subscriber of alice's session.
    let mut req = format!("ws://{}/api/v1/stream", addrs.http)
        .into_client_request()
        .expect("request");
    let bearer = format!("Bearer {}", common::SUBSCRIBER_TOKEN);
    req.headers_mut()
        .insert("authorization", bearer.parse().expect("header"));
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let subscribe =
        format!(r#"{{"subscribe":{{"sessions":[{{"sessionId":"{SESSION}","userId":"alice"}}]}}}}"#);
    ws.send(Message::Text(subscribe.into()))
        .await
        .expect("send");
    loop {
        let msg = common::next_text(&mut ws).await;
        if msg.contains("\"jobId\":3") {
            break;
        }
    }

    // A gRPC subscriber of the same session.
    let mut client = pb::monitor_client::MonitorClient::connect(format!("http://{}", addrs.grpc))
        .await
        .expect("grpc");
    let mut sub = tonic::Request::new(pb::SubscribeRequest {
        sessions: vec![pb::SessionKey {
            session_id: SESSION.into(),
            user_id: "alice".into(),
            ..Default::default()
        }],
    });
    sub.metadata_mut()
        .insert("authorization", bearer.parse().expect("metadata"));
    let mut updates = client.subscribe(sub).await.expect("subscribe").into_inner();
    let first = updates.message().await.expect("update").expect("open");
    assert!(first.snapshot);

    // Cancels under way: one on the stream, one from an operator. Both reach the silent server.
    let cancel = format!(
        r#"{{"cancel":{{"requestId":"r1","sessionId":"{SESSION}","userId":"alice","tag":"cell-1"}}}}"#
    );
    ws.send(Message::Text(cancel.into())).await.expect("send");
    let operator = tokio::spawn(
        reqwest::Client::new()
            .post(format!("http://{}/api/v1/cancel", addrs.http))
            .bearer_auth(common::ADMIN_TOKEN)
            .body(format!(
                r#"{{"requestId":"r2","sessionId":"{SESSION}","operationId":"{OP}"}}"#
            ))
            .send(),
    );
    // Both go over one HTTP/2 connection, which the silent server holds.
    let _held = tokio::time::timeout(Duration::from_secs(3), held.recv())
        .await
        .expect("the interrupts reach Spark Connect's address")
        .expect("server");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    let shutdown = tokio::spawn(agent.shutdown());

    // The stream's cancel is answered, then the subscriber is told.
    let mut answered = false;
    let close = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("open")
            .expect("frame");
        match msg {
            Message::Text(t) if t.contains("cancelResult") => {
                let m: pb::ServerMessage = serde_json::from_str(t.as_str()).expect("json");
                let Some(pb::server_message::Kind::CancelResult(r)) = m.kind else {
                    panic!("{t}")
                };
                assert_eq!(r.request_id, "r1");
                assert!(!r.ok);
                assert_eq!(r.code, "unavailable");
                assert!(r.message.contains("shutting down"), "{}", r.message);
                answered = true;
            }
            Message::Close(frame) => break frame,
            _ => {}
        }
    };
    assert!(
        answered,
        "the cancel under way was answered before the close"
    );
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Away);
    assert!(close.reason.contains("shutting down"), "{}", close.reason);

    // The operator's cancel is answered too.
    let resp = operator.await.expect("task").expect("an HTTP answer");
    assert_eq!(resp.status().as_u16(), 502);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["code"], "unavailable");

    // The gRPC subscriber is told.
    let status = loop {
        match updates.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("shutting down"));

    // The listener's connection is closed.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), listener.read_to_end(&mut rest))
        .await
        .expect("closed within 5 s")
        .expect("read");
    assert_eq!(n, 0, "nothing but the close: {rest:?}");

    assert_eq!(shutdown.await.expect("task"), Drained::Clean);
    assert!(started.elapsed() < Duration::from_secs(5));
    for addr in [addrs.ingest, addrs.http, addrs.grpc] {
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "{addr} still accepts"
        );
    }
}
