//! A listener's snapshot: on every (re)connect it resends everything live, between a start and
//! an end line. The agent builds that into a state of its own, then replaces what it held as
//! live with it, so a restart of either side, or a gap in between, ends with Spark's truth for
//! everything still running. What ended unseen is ended here and left for reconciliation with
//! Spark's REST API.

use super::app::{AppState, NoticeKind};

impl AppState {
    pub(super) fn begin_snapshot(&mut self) {
        let mut shadow = AppState::new(self.info.id.clone(), self.retention.clone());
        shadow.coalesced_tasks = self.coalesced_tasks;
        // The snapshot's jobs are attributed as live ones are: a classic session's by the
        // application's one session (the snapshot's lines do not say which kind it is).
        shadow.info = self.info.clone();
        shadow.info.end_time = None;
        if shadow.info.classic_session {
            // The hello opened the application's one session; the snapshot does not resend it.
            let (id, user) = (shadow.info.id.clone(), shadow.info.spark_user.clone());
            let start = shadow.info.start_time;
            shadow.connect.session_started(1, id, user, start);
        }
        self.snapshot_connection = self.last_connection;
        self.snapshot = Some(Box::new(shadow));
        self.sql.begin_snapshot();
    }

    pub(super) fn end_snapshot(&mut self, time: i64) {
        let Some(shadow) = self.snapshot.take() else {
            return;
        };
        let shadow = *shadow;
        self.generation += 1;
        let g = self.generation;
        let under_way = shadow.running_jobs() + shadow.running_operations();
        let info = shadow.info;
        if !info.name.is_empty() {
            self.info.name = info.name;
        }
        if !info.spark_user.is_empty() {
            self.info.spark_user = info.spark_user;
        }
        if info.start_time > 0 {
            self.info.start_time = info.start_time;
        }
        if info.connect_endpoint.is_some() {
            self.info.connect_endpoint = info.connect_endpoint;
        }
        self.executors = shadow.executors;
        let ended_jobs = self.jobs.merge_snapshot(g, shadow.jobs, time);
        let ended_others = self.connect.merge_snapshot(g, shadow.connect, time);
        self.sql.end_snapshot(g, time);
        self.stats.resyncs += 1;
        // Whatever ended, or ran entirely, while no listener was connected is only in Spark's
        // REST API; one request after every snapshot finds it.
        self.want_reconcile(time);
        // A snapshot with nothing under way and nothing ended (a listener's first connection,
        // an idle server) restores nothing worth telling.
        if under_way > 0 || !ended_jobs.is_empty() || ended_others > 0 {
            let mut message = format!(
                "reconnected: {under_way} running job(s) and operation(s) restored from Spark"
            );
            if !ended_jobs.is_empty() || ended_others > 0 {
                message.push_str(&format!(
                    "; {} that ended meanwhile wait for Spark's REST API",
                    ended_jobs.len() + ended_others
                ));
            }
            self.notice(time, NoticeKind::Resync, message);
        }
    }
}
