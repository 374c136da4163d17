//! Whose a driver's log line is, told by identity when the line arrives (see `logs`): the
//! logging thread's job tags, the stage it names and the job that ran it, or Spark's
//! structured-logging context naming a session this application knows.

use super::app::AppState;
use super::connect::ConnectRef;
use super::event::LogLine;
use super::logs::{stage_of_line, LogEntry, LogOwner};
use super::retention::LiveBound;

impl AppState {
    /// Keeps a log line with its owner; past `--max-log-lines` the oldest goes (counted).
    pub(super) fn log_line(&mut self, line: LogLine) {
        self.generation += 1;
        let owner = self.owner_of_line(&line);
        let logs = &mut self.logs;
        logs.next_seq += 1;
        logs.lines.push_back(LogEntry {
            seq: logs.next_seq,
            updated: self.generation,
            line,
            owner,
        });
        while logs.lines.len() > self.retention.live.log_lines {
            logs.lines.pop_front();
            self.evictions.add(LiveBound::LogLines);
        }
    }

    fn owner_of_line(&self, l: &LogLine) -> Option<LogOwner> {
        let stage = stage_of_line(l).filter(|k| self.stage(*k).is_some());
        // The job the line is about: its context's, else the first job of its stage.
        let job = l
            .context
            .job_id
            .as_deref()
            .and_then(|j| j.parse::<i32>().ok())
            .and_then(|id| self.job(id))
            .or_else(|| {
                let st = self.stage(stage?)?;
                st.job_ids.iter().find_map(|id| self.job(*id))
            });
        let from_job = job.and_then(|j| Some((j.job_id, j.connect.as_ref()?)));
        // Whose thread logged it: the job tags of a Connect operation's (or a task's) thread.
        let from_tags = (!l.job_tags.is_empty())
            .then(|| self.attribute_tags(&l.job_tags))
            .flatten();
        let owner = |c: &ConnectRef, job_id: Option<i32>| LogOwner {
            user_id: c.user_id.clone(),
            session_id: c.session_id.clone(),
            operation_id: c.operation_id.clone(),
            tags: c.tags.clone(),
            job_id,
            stage,
        };
        match (from_tags, from_job) {
            // The job says the same session: it adds the job and stage.
            (Some(t), Some((id, j)))
                if (&t.session_id, &t.user_id) == (&j.session_id, &j.user_id) =>
            {
                Some(owner(&t, Some(id)))
            }
            (Some(t), _) => Some(LogOwner {
                stage: None,
                ..owner(&t, None)
            }),
            (None, Some((id, j))) => Some(owner(j, Some(id))),
            (None, None) => self.owner_from_context(l),
        }
    }

    /// A thread's job tags as a job's would be attributed, without changing anything.
    fn attribute_tags(&self, tags: &[String]) -> Option<ConnectRef> {
        if let Some(c) = self.connect.attribute(tags) {
            return Some(c);
        }
        self.info.classic_session.then(|| ConnectRef {
            user_id: self.info.spark_user.clone(),
            session_id: self.info.id.clone(),
            operation_id: String::new(),
            tags: tags.to_vec(),
        })
    }

    /// Spark's structured-logging context: a session this application knows, with its user.
    fn owner_from_context(&self, l: &LogLine) -> Option<LogOwner> {
        let c = &l.context;
        if let Some(op) = c.operation_id.as_deref().and_then(|id| self.operation(id)) {
            return Some(LogOwner {
                user_id: op.user_id.clone(),
                session_id: op.session_id.clone(),
                operation_id: op.operation_id.clone(),
                tags: op.tags.clone(),
                job_id: None,
                stage: None,
            });
        }
        let session = self.connect.sessions.get(c.session_id.as_deref()?)?;
        if c.user_id.as_deref().is_some_and(|u| u != session.user_id) {
            return None;
        }
        Some(LogOwner {
            user_id: session.user_id.clone(),
            session_id: session.session_id.clone(),
            operation_id: String::new(),
            tags: Vec::new(),
            job_id: None,
            stage: None,
        })
    }
}
