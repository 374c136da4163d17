//! What a subscriber follows: a set of Connect sessions, each checked against who the
//! subscriber is and bounded in number.

use super::identity::Principal;
pub use crate::model::views::SessionKey;
use sparkscope_proto::sparkscope::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FollowError {
    #[error("a session needs a sessionId")]
    MissingSessionId,
    #[error("at most {0} sessions per subscriber")]
    TooManySessions(usize),
    #[error("the sessions of user '{0}' are not this subscriber's to follow")]
    Forbidden(String),
}

#[derive(Debug)]
pub struct Follower {
    /// Who follows: a user may follow only sessions of that Connect user id.
    principal: Principal,
    sessions: BTreeSet<SessionKey>,
    /// The application named for a session, when the subscriber named one.
    apps: BTreeMap<SessionKey, String>,
    max_sessions: usize,
}

impl Follower {
    pub fn new(max_sessions: usize, principal: Principal) -> Self {
        Follower {
            principal,
            sessions: BTreeSet::new(),
            apps: BTreeMap::new(),
            max_sessions,
        }
    }

    /// Follows these sessions too (all or none of them).
    pub fn subscribe(&mut self, keys: &[pb::SessionKey]) -> Result<(), FollowError> {
        let mut next = self.sessions.clone();
        let mut apps = self.apps.clone();
        for k in keys {
            if k.session_id.is_empty() {
                return Err(FollowError::MissingSessionId);
            }
            if !self.principal.may_follow(&k.user_id) {
                return Err(FollowError::Forbidden(k.user_id.clone()));
            }
            let key = (k.session_id.clone(), k.user_id.clone());
            if !k.app_id.is_empty() {
                apps.insert(key.clone(), k.app_id.clone());
            }
            next.insert(key);
        }
        if next.len() > self.max_sessions {
            return Err(FollowError::TooManySessions(self.max_sessions));
        }
        self.sessions = next;
        self.apps = apps;
        Ok(())
    }

    pub fn unsubscribe(&mut self, keys: &[pb::SessionKey]) {
        for k in keys {
            let key = (k.session_id.clone(), k.user_id.clone());
            self.sessions.remove(&key);
            self.apps.remove(&key);
        }
    }

    /// The application the subscriber named for a followed session, if it named one.
    pub fn app_of(&self, key: &SessionKey) -> Option<&str> {
        self.apps.get(key).map(String::as_str)
    }

    pub fn follows(&self, session_id: &str, user_id: &str) -> bool {
        self.sessions
            .contains(&(session_id.to_owned(), user_id.to_owned()))
    }

    /// Who follows.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The sessions followed, in order.
    pub fn sessions(&self) -> &BTreeSet<SessionKey> {
        &self.sessions
    }

    /// How many sessions are followed.
    pub fn followed(&self) -> usize {
        self.sessions.len()
    }

    pub fn follows_anything(&self) -> bool {
        !self.sessions.is_empty()
    }
}
