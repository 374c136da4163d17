//! Subscribers identified by JupyterHub, against a stand-in for its `GET /hub/api/user` that
//! counts what it is asked (the end-to-end tests use a real Hub): bogus tokens cost the Hub a
//! bounded number of requests per address, and never push a genuine user out of the cache.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const GOOD: &str = "hub-token-of-alice-0123456789";

/// The stand-in Hub, and how many requests it answered.
async fn fake_hub() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::get;
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        "/hub/api/user",
        get(move |headers: HeaderMap| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if auth == format!("token {GOOD}") {
                    (StatusCode::OK, r#"{"name":"alice","kind":"user"}"#)
                } else {
                    (StatusCode::FORBIDDEN, r#"{"status":403}"#)
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, asked)
}

async fn connect(http: std::net::SocketAddr, token: &str) -> Result<(), String> {
    let mut req = format!("ws://{http}/api/v1/stream")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    tokio_tungstenite::connect_async(req)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn bogus_tokens_cost_the_hub_a_bounded_number_of_requests_and_evict_no_user() {
    let (hub, asked) = fake_hub().await;
    let mut cfg = common::config();
    cfg.stream.auth.shared = None;
    cfg.stream.auth.jupyterhub_api = Some(format!("http://{hub}/hub/api"));
    cfg.stream.auth.jupyterhub_lookups = 20;
    let agent = common::start(cfg).await;
    let http = agent.addrs().http;

    connect(http, GOOD).await.expect("a genuine Hub user");
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // A thousand made-up tokens, a hundred at a time, from one address.
    let mut refused = 0;
    for round in 0..10 {
        let attempts = (0..100).map(|i| {
            let token = format!("bogus-token-{round}-{i:04}-0123456789");
            async move { connect(http, &token).await }
        });
        for r in futures_util::future::join_all(attempts).await {
            let e = r.expect_err("a bogus token is refused");
            assert!(e.contains("401") || e.contains("429"), "{e}");
            refused += 1;
        }
    }
    assert_eq!(refused, 1000);
    let after_flood = asked.load(Ordering::SeqCst);
    assert!(
        after_flood <= 1 + 20,
        "the Hub was asked {after_flood} times for 1,000 bogus tokens"
    );
    // The genuine user is still known without asking the Hub again.
    connect(http, GOOD).await.expect("still a user");
    assert_eq!(asked.load(Ordering::SeqCst), after_flood);
    let metrics = reqwest::get(format!("http://{http}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body");
    let throttled = metrics
        .lines()
        .find(|l| l.starts_with("sparkscope_limit_hits_total{limit=\"jupyterhub_lookups\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("the throttle's counter");
    assert!(throttled >= 1000.0 - 20.0, "{throttled}");
    println!("1,000 bogus tokens: {} Hub requests", after_flood - 1);
}
