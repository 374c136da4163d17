//! Hostile input on the ingest port: huge lines, garbage, numbers that would wrap, tags with
//! multi-byte characters where the parser splits, and floods of connections that never say
//! hello. The agent stays up, counts every refusal, keeps its counts sane, and a real listener
//! still gets in.

mod common;

use sparkscope::model::lock;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const S: &str = "39ed1fc5-ed53-4117-945b-fae9e26c0ce8";
const O: &str = "95b7284b-ed00-4470-91a8-2e06100c9fd1";

async fn listener(addr: std::net::SocketAddr, app: &str) -> BufReader<TcpStream> {
    common::listener(addr, app, "run-1", common::LISTENER_TOKEN)
        .await
        .expect("the agent welcomes a listener that knows the token")
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 5 s");
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("body")
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn hostile_lines_are_counted_and_skipped_and_the_connection_lives_on() {
    let mut cfg = common::config();
    cfg.ingest.max_line_bytes = 64 * 1024;
    let agent = common::start(cfg).await;
    // Another application's listener, connected all along: the hostile one must not touch it.
    let mut good = listener(agent.addrs().ingest, "local-g").await;
    let mut s = listener(agent.addrs().ingest, "local-h").await;
    let op_tag_cut = format!(
        "SparkConnect_OperationTag_User_a_Session_{S}_Operation_é{}",
        &O[1..]
    );
    let session_cut = format!(
        "SparkConnect_OperationTag_User_a_Session_é{}_Operation_{O}",
        &S[1..]
    );
    let hostile = [
        "x".repeat(200 * 1024),                                     // longer than the limit
        "{".repeat(60 * 1024),                                      // nested past any parser's depth
        "\u{0}\u{1}garbage{{{".to_owned(),                              // not JSON
        "{\"Event\":\"SparkListenerJobStart\"}".to_owned(),           // a field missing
        r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":1,"Stage Attempt ID":0,"Number of Tasks":-3}}"#.to_owned(),
        r#"{"Event":"SparkscopeStageProgress","stageId":1,"stageAttemptId":0,"started":4,"succeeded":2147483447,"failed":-1}"#.to_owned(),
        r#"{"Event":"SparkListenerExecutorAdded","Timestamp":1,"Executor ID":"e","Executor Info":{"Host":"h","Total Cores":4294967294}}"#.to_owned(),
        r#"{"Event":"SparkListenerJobEnd","Job ID":-5,"Completion Time":1,"Job Result":{"Result":"JobSucceeded"}}"#.to_owned(),
        r#"{"Event":"SparkListenerTaskEnd","Stage ID":1,"Stage Attempt ID":0,"Task End Reason":{"Reason":"Success"},"Task Metrics":{"Executor Run Time":-9223372036854775808}}"#.to_owned(),
    ];
    // Well-formed lines whose tags would have split a character: applied, attributed to nothing.
    let odd_tags = [
        format!(
            r#"{{"Event":"SparkListenerJobStart","Job ID":1,"Submission Time":5,"Stage Infos":[{{"Stage ID":1,"Stage Attempt ID":0,"Number of Tasks":4}}],"Stage IDs":[1],"Properties":{{"spark.job.tags":"{op_tag_cut},{session_cut}"}}}}"#
        ),
        format!(
            r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationClosed","jobTag":"{op_tag_cut}","operationId":"x","eventTime":9}}"#
        ),
    ];
    let valid = [
        r#"{"Event":"SparkListenerStageSubmitted","Stage Info":{"Stage ID":1,"Stage Attempt ID":0,"Number of Tasks":4,"Submission Time":6},"Properties":{}}"#.to_owned(),
        r#"{"Event":"SparkscopeStageProgress","stageId":1,"stageAttemptId":0,"started":3,"succeeded":1}"#.to_owned(),
    ];
    let mut all = Vec::new();
    for l in hostile.iter().chain(&odd_tags).chain(&valid) {
        all.extend_from_slice(l.as_bytes());
        all.push(b'\n');
    }
    s.get_mut().write_all(&all).await.expect("write");

    let app = agent.store().app("local-h");
    eventually("the valid lines after the hostile ones apply", || {
        lock(&app)
            .job(1)
            .is_some_and(|j| j.active_tasks == 2 && j.completed_tasks == 1)
    })
    .await;
    {
        let a = lock(&app);
        assert_eq!(a.stats().parse_errors, hostile.len() as u64);
        assert!(a.is_live());
        assert_eq!(a.executors().count(), 0, "the absurd executor was refused");
        assert!(a.job(1).is_some_and(|j| j.connect.is_none()));
        assert_eq!(a.broken_invariants(), Vec::<String>::new());
    }

    let job = r#"{"Event":"SparkListenerJobStart","Job ID":7,"Submission Time":5,"Stage Infos":[{"Stage ID":9,"Stage Attempt ID":0,"Number of Tasks":2}],"Stage IDs":[9],"Properties":{}}"#;
    let end = r#"{"Event":"SparkListenerJobEnd","Job ID":7,"Completion Time":8,"Job Result":{"Result":"JobSucceeded"}}"#;
    good.get_mut()
        .write_all(format!("{job}\n{end}\n").as_bytes())
        .await
        .expect("write");
    let other = agent.store().app("local-g");
    eventually("the other application's lines apply", || {
        lock(&other)
            .job(7)
            .is_some_and(|j| j.status == sparkscope::model::jobs::JobStatus::Succeeded)
    })
    .await;
    let o = lock(&other);
    assert!(o.is_live());
    assert_eq!(o.stats().parse_errors, 0);
}

#[tokio::test]
async fn silent_connections_are_bounded_and_a_real_listener_still_gets_in() {
    let mut cfg = common::config();
    cfg.ingest.max_pending = 8;
    cfg.ingest.hello_timeout = Duration::from_secs(30);
    let agent = common::start(cfg).await;
    let addr = agent.addrs().ingest;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // The real listener comes last and says hello at once: it gets in.
    let _real = listener(addr, "local-real").await;
    assert!(agent
        .store()
        .get("local-real")
        .is_some_and(|a| lock(&a).is_live()));
    // At most 8 silent connections are held; the others were closed, and counted.
    let mut closed = 0;
    for s in &mut idle {
        let mut said = Vec::new();
        let read = tokio::time::timeout(Duration::from_millis(20), s.read_to_end(&mut said));
        if let Ok(Ok(_)) = read.await {
            assert!(String::from_utf8_lossy(&said).contains("not proven themselves"));
            closed += 1;
        }
    }
    assert!(
        closed >= 300 - 8,
        "{closed} of 300 silent connections closed"
    );
    let text = scrape(agent.addrs().http).await;
    let evicted = sample(
        &text,
        "sparkscope_limit_hits_total{limit=\"pending_listeners\",action=\"evicted\"}",
    );
    assert!(evicted >= 292.0, "{evicted}");
}

#[tokio::test]
async fn refusals_are_answered_and_counted_by_reason() {
    let mut cfg = common::config();
    cfg.ingest.hello_timeout = Duration::from_millis(200);
    cfg.ingest.max_connections = 1;
    let agent = common::start(cfg).await;
    let addr = agent.addrs().ingest;
    let before = scrape(agent.addrs().http).await;
    let count = |text: &str, reason: &str| {
        sample(
            text,
            &format!("sparkscope_listener_refusals_total{{reason=\"{reason}\"}}"),
        )
    };

    async fn answer(addr: std::net::SocketAddr, first: &[u8]) -> String {
        let mut s = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
        s.get_mut().write_all(first).await.expect("write");
        let mut line = String::new();
        let _ = tokio::time::timeout(Duration::from_secs(3), s.read_line(&mut line)).await;
        line
    }
    // A listener with another token: the agent's proof does not convince it, and the agent
    // refuses its proof.
    let wrong = common::listener(addr, "a", "r", "guess").await;
    assert!(wrong.expect_err("refused").contains("did not prove"));
    let wrong = common::listener_unchecked(addr, "a", "r", "guess").await;
    assert!(wrong.expect_err("refused").contains("token"));
    let old = "{\"Event\":\"SparkscopeHello\",\"protocol\":1,\"appId\":\"a\",\"token\":\"lt\"}\n";
    assert!(answer(addr, old.as_bytes()).await.contains("protocol"));
    assert!(answer(addr, b"{\"Event\":\"SparkListenerJobEnd\"}\n")
        .await
        .contains("SparkscopeHello"));
    assert!(answer(addr, &vec![b'x'; 20 * 1024]).await.contains("hello"));
    assert!(answer(addr, b"").await.contains("timeout"));
    // The connection bound: one listener in, the second refused.
    let _first = listener(addr, "one").await;
    let second = common::listener(addr, "two", "run-2", common::LISTENER_TOKEN).await;
    assert!(second.expect_err("refused").contains("too many"));

    let after = scrape(agent.addrs().http).await;
    for (reason, n) in [
        ("token", 1.0),
        ("protocol", 1.0),
        ("hello", 2.0),
        ("timeout", 1.0),
    ] {
        assert_eq!(
            count(&after, reason) - count(&before, reason),
            n,
            "reason {reason}"
        );
    }
    let limit = "sparkscope_limit_hits_total{limit=\"listener_connections\",action=\"refused\"}";
    assert!(sample(&after, limit) - sample(&before, limit) >= 1.0);
}

#[tokio::test]
async fn a_second_driver_for_a_connected_application_is_refused() {
    let agent = common::start(common::config()).await;
    let addr = agent.addrs().ingest;
    let _real = listener(addr, "local-x").await;
    let impostor = common::listener(addr, "local-x", "another-run", common::LISTENER_TOKEN).await;
    assert!(impostor.expect_err("refused").contains("another driver"));
    // The same driver, reconnecting over a half-open connection, is welcome.
    let again = listener(addr, "local-x").await;
    drop((_real, again));
    // While the driver is away (a network blip, its reconnect backing off), its application is
    // still its own: someone else with the token cannot take it.
    let store = agent.store().clone();
    eventually("the driver's connections closed", || {
        store.get("local-x").is_some_and(|a| !lock(&a).is_live())
    })
    .await;
    let impostor = common::listener(addr, "local-x", "another-run", common::LISTENER_TOKEN).await;
    assert!(impostor.expect_err("refused").contains("another driver"));
    let _back = listener(addr, "local-x").await;
}

/// Connections that say hello and then never prove they know the token stay among the unproven
/// ones, bounded like silent ones: past the bound the oldest are closed and counted.
#[tokio::test]
async fn connections_past_the_hello_are_bounded_until_they_prove_themselves() {
    let mut cfg = common::config();
    cfg.ingest.max_pending = 2;
    cfg.ingest.hello_timeout = Duration::from_secs(30);
    let agent = common::start(cfg).await;
    let addr = agent.addrs().ingest;
    let before = scrape(agent.addrs().http).await;
    let limit = "sparkscope_limit_hits_total{limit=\"pending_listeners\",action=\"evicted\"}";
    let hello = |i: usize| {
        format!(
            "{{\"Event\":\"SparkscopeHello\",\"protocol\":3,\"appId\":\"app-{i}\",\"runId\":\"r\",\
             \"nonce\":\"0123456789abcdef0123456789abcdef\"}}\n"
        )
    };
    let mut held = Vec::new();
    for i in 0..40 {
        let mut s = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
        s.get_mut()
            .write_all(hello(i).as_bytes())
            .await
            .expect("hello");
        let mut challenge = String::new();
        s.read_line(&mut challenge).await.expect("challenge");
        assert!(challenge.contains("\"nonce\""), "{challenge}");
        held.push(s);
    }
    let mut closed = 0;
    for s in &mut held {
        let mut rest = String::new();
        let read = tokio::time::timeout(Duration::from_millis(50), s.read_to_string(&mut rest));
        if let Ok(Ok(_)) = read.await {
            assert!(rest.contains("not proven themselves"), "{rest}");
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        40 - 2,
        "every connection past the bound of 2 was closed"
    );
    let after = scrape(agent.addrs().http).await;
    assert_eq!(sample(&after, limit) - sample(&before, limit), 38.0);
    // A real listener still gets in (and takes the place of the oldest unproven one).
    let _real = listener(addr, "local-real").await;
}
