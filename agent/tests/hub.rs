//! The stream hub, driven as the agent drives it: events applied to the store, the store's
//! change signal, the hub's builder on its own task. What a subscriber's feed receives is what
//! its session's subscribers are sent.

use sparkscope::ingest::ingest_line;
use sparkscope::model::{lock, Store};
use sparkscope::publish::stream::hub::{self, Hub};
use sparkscope::shutdown::Trigger;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::TryRecvError;

const S_A: &str = "8f3c2a9e-1111-4b6d-9c1e-aaaaaaaaaaaa";
const S_B: &str = "8f3c2a9e-2222-4b6d-9c1e-bbbbbbbbbbbb";

fn operation(session: &str, op: &str) -> String {
    format!(
        r#"{{"Event":"org.apache.spark.sql.connect.service.SparkListenerConnectOperationStarted","jobTag":"SparkConnect_OperationTag_User_u_Session_{session}_Operation_{op}","operationId":"{op}","eventTime":1,"sessionId":"{session}","userId":"u","userName":"","statementText":"range","sparkSessionTags":["cell"],"extraTags":{{}}}}"#
    )
}

fn job(id: i32, session: &str, op: &str) -> String {
    format!(
        r#"{{"Event":"SparkListenerJobStart","Job ID":{id},"Submission Time":5,"Stage Infos":[{{"Stage ID":{id},"Stage Attempt ID":0,"Stage Name":"s","Number of Tasks":4}}],"Stage IDs":[{id}],"Properties":{{"spark.job.tags":"SparkConnect_OperationTag_User_u_Session_{session}_Operation_{op}"}}}}"#
    )
}

fn feed(store: &Store, lines: &[String]) {
    {
        let app = store.app("local-1");
        let mut a = lock(&app);
        for l in lines {
            ingest_line(&mut a, l.as_bytes());
        }
    }
    store.notify();
}

fn key(session: &str) -> (String, String) {
    (session.to_owned(), "u".to_owned())
}

/// A store and a hub whose builder runs until the trigger is dropped.
fn start() -> (Arc<Store>, Arc<Hub>, Trigger) {
    let store = Arc::new(Store::default());
    let (hub, inbox) = Hub::new();
    let (trigger, shutdown) = Trigger::new();
    tokio::spawn(hub::run(
        hub.clone(),
        inbox,
        store.clone(),
        Duration::from_millis(20),
        None,
        shutdown,
    ));
    (store, hub, trigger)
}

async fn next<T: Clone>(rx: &mut tokio::sync::broadcast::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .expect("a piece within 3 s")
        .expect("the feed is open")
}

#[tokio::test]
async fn a_change_reaches_only_its_sessions_feed_and_every_subscriber_shares_one_piece() {
    let (store, hub, _trigger) = start();
    let (mut a1, mut a2, mut b) = (
        hub.follow(&key(S_A), None),
        hub.follow(&key(S_A), None),
        hub.follow(&key(S_B), None),
    );
    feed(&store, &[operation(S_A, "op-a"), job(1, S_A, "op-a")]);
    let (p1, p2) = (next(&mut a1).await, next(&mut a2).await);
    assert!(
        Arc::ptr_eq(&p1, &p2),
        "built once, shared by both subscribers"
    );
    let jobs: Vec<i32> = p1.update.jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(jobs, [1]);
    assert_eq!(
        b.try_recv().err(),
        Some(TryRecvError::Empty),
        "session B did not change"
    );

    feed(&store, &[operation(S_B, "op-b")]);
    let pb_ = next(&mut b).await;
    assert_eq!(pb_.update.operations.len(), 1);
    assert!(pb_.update.jobs.is_empty());
    assert!(pb_.seq > p1.seq);
    assert_eq!(
        a1.try_recv().err(),
        Some(TryRecvError::Empty),
        "session A did not change"
    );

    // A change signal with nothing new for anyone: no piece.
    store.notify();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(a1.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(b.try_recv().err(), Some(TryRecvError::Empty));
}

#[tokio::test]
async fn a_snapshot_and_the_deltas_after_it_neither_overlap_nor_leave_a_gap() {
    let (store, hub, _trigger) = start();
    feed(&store, &[operation(S_A, "op-a"), job(1, S_A, "op-a")]);
    tokio::time::sleep(Duration::from_millis(100)).await; // built while nobody followed

    let mut feed_a = hub.follow(&key(S_A), None);
    let snap = tokio::time::timeout(Duration::from_secs(3), hub.snapshot(vec![key(S_A)]))
        .await
        .expect("answered within 3 s")
        .expect("answered");
    let jobs: Vec<i32> = snap.pieces[0]
        .update
        .jobs
        .iter()
        .map(|j| j.job_id)
        .collect();
    assert_eq!(jobs, [1]);
    assert_eq!(snap.pieces[0].update.operations.len(), 1);
    assert_eq!(snap.pieces[0].update.applications.len(), 1);

    feed(&store, &[job(2, S_A, "op-a")]);
    let mut next_piece = next(&mut feed_a).await;
    // A piece of the snapshot's own tick holds nothing the snapshot lacked; the stream drops it.
    while next_piece.seq <= snap.seq {
        next_piece = next(&mut feed_a).await;
    }
    let jobs: Vec<i32> = next_piece.update.jobs.iter().map(|j| j.job_id).collect();
    assert_eq!(jobs, [2], "only what changed after the snapshot");
}

#[tokio::test]
async fn a_session_nobody_knows_gets_an_empty_snapshot() {
    let (_store, hub, _trigger) = start();
    let _feed = hub.follow(&key(S_B), None);
    let snap = tokio::time::timeout(Duration::from_secs(3), hub.snapshot(vec![key(S_B)]))
        .await
        .expect("answered within 3 s")
        .expect("answered");
    assert_eq!(snap.pieces.len(), 1);
    assert!(snap.pieces[0].update.jobs.is_empty());
    assert!(snap.pieces[0].update.applications.is_empty());
}
