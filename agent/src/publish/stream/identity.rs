//! Who a stream subscriber is: a notebook user, known by a token from the operator's token file
//! or by the API token JupyterHub gave its kernel, or the holder of one shared token (a one-user
//! machine). A user follows and cancels only the sessions of its own Spark Connect user id.
//!
//! Credentials are checked again while a stream is open: a token removed from the file, or a Hub
//! token the Hub no longer vouches for, ends the streams that came in with it.

use crate::auth::{self, Secret};
use crate::flags::{non_empty, seconds};
use crate::telemetry::{self, Limit};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Who a stream subscriber is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A notebook user, by the Spark Connect user id its sessions carry: it may follow and
    /// cancel those sessions only.
    User(String),
    /// The holder of the shared subscriber token, or anyone when subscribers are anonymous: it
    /// may follow any session it names by session id and user id (one-user machines).
    Shared,
}

impl Principal {
    /// Whether this subscriber may follow (and so cancel) the session of `user_id`.
    pub fn may_follow(&self, user_id: &str) -> bool {
        match self {
            Principal::User(u) => u == user_id,
            Principal::Shared => true,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error(
        "no credential: send Authorization: Bearer <token>, or prove a token in the handshake"
    )]
    Missing,
    #[error("the credential is not valid (wrong, forged, revoked or expired)")]
    Refused,
    #[error("the credential cannot be checked now: {0}")]
    Unavailable(String),
    #[error("too many unknown credentials from this address; try again later")]
    Throttled,
}

/// What a subscriber came in with, to check again while its stream is open.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing (`--allow-anonymous-subscribers`).
    Anonymous,
    /// A token: presented as a bearer token, or proven in the stream's handshake.
    Token(Secret),
}

/// Why the agent will not start with this subscriber configuration.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "the subscriber token file {0} is readable by other users: make it the agent's own \
         (chmod 600)"
    )]
    TooOpen(PathBuf),
    #[error("cannot read the subscriber token file {path}: {why}")]
    Unreadable { path: PathBuf, why: String },
}

/// How stream subscribers authenticate; the first source that knows the token wins.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Notebooks (stream subscribers)")]
pub struct SubscriberAuthConfig {
    /// One token for every stream subscriber, who may then follow any session it names by
    /// session id and user id: for a one-user machine. Shared servers identify users with
    /// --subscriber-tokens-file or --jupyterhub-api-url.
    #[arg(
        long = "subscriber-token",
        value_name = "TOKEN",
        env = "SPARKSCOPE_SUBSCRIBER_TOKEN",
        hide_env_values = true,
        value_parser = Secret::parse_own
    )]
    pub shared: Option<Secret>,
    /// Serve the streams without a credential. Only for a machine where every local user is
    /// trusted.
    #[arg(
        long = "allow-anonymous-subscribers",
        env = "SPARKSCOPE_ALLOW_ANONYMOUS_SUBSCRIBERS"
    )]
    pub anonymous: bool,
    /// A file of `<user> <token>` lines (a line starting with `#` is a comment): a subscriber
    /// presenting a user's token follows and cancels only that Spark Connect user's sessions.
    /// It must be readable by the agent's user only. Read again whenever its content changes;
    /// a user removed from it loses its open streams within a second.
    #[arg(
        long = "subscriber-tokens-file",
        value_name = "FILE",
        env = "SPARKSCOPE_SUBSCRIBER_TOKENS_FILE"
    )]
    pub tokens_file: Option<PathBuf>,
    /// JupyterHub's API URL (e.g. http://127.0.0.1:8081/hub/api): a subscriber presenting a
    /// Hub user's API token (the kernel's JUPYTERHUB_API_TOKEN) is that user.
    #[arg(
        long = "jupyterhub-api-url",
        value_name = "URL",
        env = "SPARKSCOPE_JUPYTERHUB_API_URL",
        value_parser = non_empty
    )]
    pub jupyterhub_api: Option<String>,
    /// How long JupyterHub's answer about a token is trusted, in seconds; an open stream's token
    /// is asked about again this often.
    #[arg(
        long = "jupyterhub-cache-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "60",
        env = "SPARKSCOPE_JUPYTERHUB_CACHE_SECONDS"
    )]
    pub jupyterhub_cache: Duration,
    /// Unknown tokens one address may have the agent ask JupyterHub about per minute, counting
    /// only those the Hub refused (and those still being asked about); more are refused until
    /// the minute is over.
    #[arg(
        long = "jupyterhub-lookups-per-minute",
        value_name = "N",
        default_value_t = 30,
        env = "SPARKSCOPE_JUPYTERHUB_LOOKUPS_PER_MINUTE"
    )]
    pub jupyterhub_lookups: u32,
    /// Hub users whose answer is remembered; past it the least recently used is forgotten.
    #[arg(
        long = "jupyterhub-cached-users",
        value_name = "N",
        default_value_t = 4096,
        env = "SPARKSCOPE_JUPYTERHUB_CACHED_USERS"
    )]
    pub jupyterhub_cached_users: usize,
}

crate::flags::default_from_flags!(SubscriberAuthConfig);

impl SubscriberAuthConfig {
    pub fn any(&self) -> bool {
        self.anonymous
            || self.shared.is_some()
            || self.tokens_file.is_some()
            || self.jupyterhub_api.is_some()
    }
}

/// A token's public name in the stream's handshake: a notebook says which token it will prove
/// without giving the token away.
pub fn key_id(token: &str) -> String {
    let digest = Sha256::digest(format!("sparkscope-key-id\n{token}").as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The tokens the agent holds itself (the shared one and the file's), by key id.
#[derive(Default)]
struct Keys {
    by_id: HashMap<String, (Principal, Secret)>,
    /// The SHA-256 of the file as last read; `None` before a good read.
    file_digest: Option<[u8; 32]>,
}

/// Identifies subscribers.
pub struct SubscriberAuth {
    cfg: SubscriberAuthConfig,
    keys: RwLock<Keys>,
    /// Bumped whenever a credential may have been revoked (the token file changed).
    revision: watch::Sender<u64>,
    hub: Option<HubClient>,
}

impl SubscriberAuth {
    /// Reads the token file once: the agent does not start with one others can read, or one it
    /// cannot read.
    pub fn new(cfg: SubscriberAuthConfig) -> Result<SubscriberAuth, IdentityError> {
        let hub = cfg.jupyterhub_api.clone().map(|api| {
            HubClient::new(
                api,
                cfg.jupyterhub_cache,
                cfg.jupyterhub_lookups,
                cfg.jupyterhub_cached_users,
            )
        });
        let auth = SubscriberAuth {
            keys: RwLock::default(),
            revision: watch::channel(0).0,
            hub,
            cfg,
        };
        if let Some(path) = &auth.cfg.tokens_file {
            let text = read_private(path)?;
            auth.install(Some(&text));
        } else {
            auth.install(None);
        }
        Ok(auth)
    }

    /// Changes whenever credentials may have been revoked.
    pub fn revocations(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// How often an open stream's credential is asked about again besides revocations: the
    /// Hub's answers last this long.
    pub fn recheck_every(&self) -> Option<Duration> {
        self.hub.as_ref().map(|h| h.ttl)
    }

    /// Reads the token file again every `every` until `stop`: a changed content (not only a
    /// changed time) replaces the users, and revokes what is gone. A file that became readable
    /// by others, or unreadable, lets nobody in.
    pub async fn watch(&self, every: Duration, mut stop: crate::shutdown::Shutdown) {
        let Some(path) = self.cfg.tokens_file.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = stop.requested() => return,
                _ = tick.tick() => {}
            }
            let read = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_private(&path)).await
            };
            match read {
                Ok(Ok(text)) => {
                    let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
                    let same = self.keys().file_digest == Some(digest);
                    if !same {
                        self.install(Some(&text));
                    }
                }
                Ok(Err(e)) => {
                    if self.keys().file_digest.is_some() {
                        tracing::error!(error = %e, "nobody is let in by the subscriber token file");
                        self.install_none_from_file();
                    }
                }
                Err(_) => return, // the runtime is going away
            }
        }
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The shared token and the file's users (`None`: no file), as the keys in force.
    fn install(&self, file: Option<&str>) {
        let mut by_id = HashMap::new();
        if let Some(shared) = &self.cfg.shared {
            by_id.insert(key_id(shared.expose()), (Principal::Shared, shared.clone()));
        }
        let mut file_digest = None;
        if let Some(text) = file {
            let users = parse_token_file(text);
            tracing::info!(users = users.len(), "read the subscriber token file");
            for (user, token) in users {
                by_id.insert(key_id(token.expose()), (Principal::User(user), token));
            }
            file_digest = Some(Sha256::digest(text.as_bytes()).into());
        }
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Keys { by_id, file_digest };
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }

    fn install_none_from_file(&self) {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.by_id.retain(|_, (p, _)| *p == Principal::Shared);
        keys.file_digest = None;
        drop(keys);
        self.revision.send_modify(|r| *r = r.wrapping_add(1));
    }

    /// Whether notebooks may prove a token in the stream's handshake: the agent holds some.
    pub fn takes_handshakes(&self) -> bool {
        self.cfg.shared.is_some() || self.cfg.tokens_file.is_some()
    }

    /// The token a notebook names by its key id, with whose it is: the stream's handshake
    /// proves it without sending it.
    pub fn key(&self, key_id: &str) -> Option<(Principal, Secret)> {
        self.keys().by_id.get(key_id).cloned()
    }

    /// Who presents `token` as a bearer token, from `source`: the agent's own tokens first,
    /// then JupyterHub (each address may make it ask about a limited number of unknown tokens).
    pub async fn identify(
        &self,
        token: Option<&str>,
        source: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if self.cfg.anonymous {
                Ok(Principal::Shared)
            } else {
                Err(AuthError::Missing)
            };
        };
        if let Some(p) = self.own(token) {
            return Ok(p);
        }
        if let Some(hub) = &self.hub {
            return hub.user_of(token, source).await.map(Principal::User);
        }
        if self.cfg.anonymous {
            return Ok(Principal::Shared);
        }
        Err(AuthError::Refused)
    }

    /// Whose `token` is among the agent's own tokens. Every one is compared, so the time taken
    /// says nothing about which matched.
    fn own(&self, token: &str) -> Option<Principal> {
        let keys = self.keys();
        let mut found = None;
        for (principal, secret) in keys.by_id.values() {
            if secret.matches(token) && found.is_none() {
                found = Some(principal.clone());
            }
        }
        found
    }

    /// Whether an open stream's credential still stands for `principal`: `Err(Refused)` once
    /// it was revoked. A Hub that cannot be reached leaves it standing.
    pub async fn recheck(&self, cred: &Credential, principal: &Principal) -> Result<(), AuthError> {
        let token = match cred {
            Credential::Anonymous => return Ok(()),
            Credential::Token(t) => t,
        };
        match self.identify(Some(token.expose()), None).await {
            Ok(p) if &p == principal => Ok(()),
            Ok(_) => Err(AuthError::Refused),
            Err(AuthError::Unavailable(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Reads a file only the agent's user may read.
fn read_private(path: &Path) -> Result<String, IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e: std::io::Error| IdentityError::Unreadable {
        path: path.to_owned(),
        why: e.to_string(),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(IdentityError::TooOpen(path.to_owned()));
    }
    std::fs::read_to_string(path).map_err(unreadable)
}

/// `<user> <token>` lines; a line whose first character that is not white space is `#` is a
/// comment (a `#` elsewhere belongs to the token). Weak tokens are left out, with a warning.
fn parse_token_file(text: &str) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, token)) = line.split_once(char::is_whitespace) else {
            tracing::warn!(line = n + 1, "a token file line without a token: skipped");
            continue;
        };
        let token = token.trim();
        if let Some(why) = auth::weakness(token) {
            tracing::warn!(line = n + 1, user, "{why}: the line is skipped");
            continue;
        }
        if let Some(secret) = Secret::new(Some(token)) {
            out.push((user.to_owned(), secret));
        }
    }
    out
}

/// Asks JupyterHub who owns a token (`GET <api>/user`, which any token may call), and keeps
/// the answer for a while: keyed by the token's SHA-256, never the token. Users it vouched for
/// and refusals are kept apart, so that a flood of bogus tokens never evicts a real user; and
/// each address may have it ask about only so many unknown tokens a minute.
struct HubClient {
    api: String,
    ttl: Duration,
    http: reqwest::Client,
    users: Mutex<Lru<Result<String, AuthError>>>,
    refused: Mutex<Lru<()>>,
    sources: Mutex<HashMap<IpAddr, Bucket>>,
    per_minute: u32,
}

/// A refusal is remembered this long.
const HUB_REFUSAL_TTL: Duration = Duration::from_secs(60);
/// Refusals remembered at most.
const HUB_REFUSALS: usize = 4096;
/// Addresses whose lookups are counted at most.
const HUB_SOURCES: usize = 4096;

/// Lookups of unknown tokens one address has left this minute.
struct Bucket {
    since: Instant,
    used: u32,
}

impl HubClient {
    fn new(api: String, ttl: Duration, per_minute: u32, users: usize) -> HubClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        HubClient {
            api: api.trim_end_matches('/').to_owned(),
            ttl,
            http,
            users: Mutex::new(Lru::new(users.max(1), Limit::HubUsers)),
            refused: Mutex::new(Lru::new(HUB_REFUSALS, Limit::HubRefusals)),
            sources: Mutex::default(),
            per_minute,
        }
    }

    async fn user_of(&self, token: &str, source: Option<IpAddr>) -> Result<String, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some(answer) = lock(&self.users).get(&key, now) {
            return answer;
        }
        if lock(&self.refused).get(&key, now).is_some() {
            return Err(AuthError::Refused);
        }
        if let Some(ip) = source {
            if !self.may_ask(ip, now) {
                telemetry::limit_hit(Limit::HubLookups, 1);
                return Err(AuthError::Throttled);
            }
        }
        let answer = self.ask(token).await;
        if let (Some(ip), Ok(_)) = (source, &answer) {
            // Only what the Hub refused counts against an address: kernels that share one (a
            // Hub on one host) are not held back by each other's genuine tokens.
            self.refund(ip);
        }
        telemetry::hub_request(match &answer {
            Ok(_) => "ok",
            Err(AuthError::Refused) => "refused",
            Err(_) => "unavailable",
        });
        match &answer {
            Ok(_) => lock(&self.users).put(key, answer.clone(), now + self.ttl),
            Err(AuthError::Refused) => lock(&self.refused).put(key, (), now + HUB_REFUSAL_TTL),
            Err(_) => {} // the Hub was not reached: ask again next time
        }
        answer
    }

    /// Whether `ip` may have the Hub asked about one more unknown token now.
    fn may_ask(&self, ip: IpAddr, now: Instant) -> bool {
        let mut sources = lock(&self.sources);
        if sources.len() >= HUB_SOURCES && !sources.contains_key(&ip) {
            sources.retain(|_, b| now.duration_since(b.since) < Duration::from_secs(60));
            if sources.len() >= HUB_SOURCES {
                return false;
            }
        }
        let b = sources.entry(ip).or_insert(Bucket {
            since: now,
            used: 0,
        });
        if now.duration_since(b.since) >= Duration::from_secs(60) {
            *b = Bucket {
                since: now,
                used: 0,
            };
        }
        if b.used >= self.per_minute {
            return false;
        }
        b.used += 1;
        true
    }

    fn refund(&self, ip: IpAddr) {
        if let Some(b) = lock(&self.sources).get_mut(&ip) {
            b.used = b.used.saturating_sub(1);
        }
    }

    async fn ask(&self, token: &str) -> Result<String, AuthError> {
        #[derive(serde::Deserialize)]
        struct Whoami {
            name: String,
            #[serde(default)]
            kind: Option<String>,
        }
        let resp = self
            .http
            .get(format!("{}/user", self.api))
            .header("Authorization", format!("token {token}"))
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(format!("JupyterHub did not answer: {e}")))?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 | 404 => return Err(AuthError::Refused),
            other => {
                return Err(AuthError::Unavailable(format!(
                    "JupyterHub answered {other}"
                )))
            }
        }
        let who: Whoami = resp
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(format!("JupyterHub's answer: {e}")))?;
        // A service's token is no notebook user.
        if who.kind.as_deref().is_some_and(|k| k != "user") || who.name.is_empty() {
            return Err(AuthError::Refused);
        }
        Ok(who.name)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers by the SHA-256 of a token, each until it expires, at most `cap`: past it the least
/// recently used goes (counted under `limit`).
struct Lru<V> {
    cap: usize,
    limit: Limit,
    entries: HashMap<[u8; 32], (V, Instant, u64)>,
    clock: u64,
}

impl<V: Clone> Lru<V> {
    fn new(cap: usize, limit: Limit) -> Self {
        Lru {
            cap,
            limit,
            entries: HashMap::new(),
            clock: 0,
        }
    }

    fn get(&mut self, key: &[u8; 32], now: Instant) -> Option<V> {
        self.clock += 1;
        let clock = self.clock;
        match self.entries.get_mut(key) {
            Some((v, until, used)) if *until > now => {
                *used = clock;
                Some(v.clone())
            }
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&mut self, key: [u8; 32], v: V, until: Instant) {
        self.clock += 1;
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            let now = Instant::now();
            self.entries.retain(|_, (_, u, _)| *u > now);
            if self.entries.len() >= self.cap {
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, _, used))| *used)
                    .map(|(k, _)| *k)
                {
                    self.entries.remove(&oldest);
                    telemetry::limit_hit(self.limit, 1);
                }
            }
        }
        self.entries.insert(key, (v, until, self.clock));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private(path: &Path, text: &str) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    const ALICE: &str = "a-token-0123456789abcdef";
    const BOB: &str = "b-token-0123456789abcdef";

    #[tokio::test]
    async fn users_come_from_the_token_file_and_revocation_takes_effect() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens");
        private(
            &path,
            &format!("# notebook users\nalice {ALICE}\n  # desk 2\nbob   {BOB}#x\nweak short\n"),
        );
        let auth = SubscriberAuth::new(SubscriberAuthConfig {
            shared: Secret::new(Some("shared-0123456789abcdef")),
            tokens_file: Some(path.clone()),
            ..SubscriberAuthConfig::default()
        })
        .expect("auth");
        let alice = Principal::User("alice".into());
        assert_eq!(auth.identify(Some(ALICE), None).await, Ok(alice.clone()));
        // `#` inside a token is the token's.
        let bob_token = format!("{BOB}#x");
        assert_eq!(
            auth.identify(Some(&bob_token), None).await,
            Ok(Principal::User("bob".into()))
        );
        assert_eq!(
            auth.identify(Some("short"), None).await,
            Err(AuthError::Refused)
        );
        assert_eq!(
            auth.identify(Some("shared-0123456789abcdef"), None).await,
            Ok(Principal::Shared)
        );
        assert_eq!(auth.identify(None, None).await, Err(AuthError::Missing));
        assert_eq!(auth.key(&key_id(ALICE)).map(|k| k.0), Some(alice.clone()));

        // Alice is removed; the file keeps its size and, as far as the clock can tell, its time.
        let cred = Credential::Token(Secret::new(Some(ALICE)).expect("token"));
        let mut revoked = auth.revocations();
        revoked.borrow_and_update();
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        private(
            &path,
            &format!("# notebook users\nalicX {ALICE}\n  # desk 2\nbob   {BOB}#x\nweak short\n"),
        );
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(modified))
            .expect("touch");
        let (trigger, stop) = crate::shutdown::Trigger::new();
        let watching = auth.watch(Duration::from_millis(20), stop);
        tokio::select! {
            () = watching => panic!("the watch ended"),
            r = tokio::time::timeout(Duration::from_secs(2), revoked.changed()) => {
                r.expect("revoked in time").expect("changed");
            }
        }
        drop(trigger);
        assert_eq!(auth.recheck(&cred, &alice).await, Err(AuthError::Refused));
        assert!(Principal::User("alice".into()).may_follow("alice"));
        assert!(!Principal::User("alice".into()).may_follow("bob"));
        assert!(Principal::Shared.may_follow("anyone"));
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("alice {ALICE}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = SubscriberAuth::new(SubscriberAuthConfig {
            tokens_file: Some(path),
            ..SubscriberAuthConfig::default()
        })
        .err()
        .expect("refused");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn refusals_never_evict_vouched_users_and_the_least_recent_user_goes_first() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut users: Lru<u8> = Lru::new(2, Limit::HubUsers);
        users.put([1; 32], 1, later);
        users.put([2; 32], 2, later);
        assert_eq!(users.get(&[1; 32], now), Some(1));
        users.put([3; 32], 3, later);
        assert_eq!(
            users.get(&[2; 32], now),
            None,
            "the least recently used went"
        );
        assert_eq!(users.get(&[1; 32], now), Some(1));
        assert_eq!(users.get(&[3; 32], now), Some(3));
        assert_eq!(users.get(&[3; 32], later), None, "expired");
    }
}
