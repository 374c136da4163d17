//! Who a stream subscriber is: a notebook user, known by a token from the operator's token file
//! or by the API token JupyterHub gave its kernel, or the holder of one shared token (a one-user
//! machine). A user follows and cancels only the sessions of its own Spark Connect user id.

use crate::auth::Secret;
use crate::flags::{non_empty, seconds};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

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
    #[error("no credential: send Authorization: Bearer <token>")]
    Missing,
    #[error("the credential is not valid (wrong, forged or expired)")]
    Refused,
    #[error("the credential cannot be checked now: {0}")]
    Unavailable(String),
}

/// How stream subscribers authenticate; the first source that knows the token wins.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Notebooks (stream subscribers)")]
pub struct SubscriberAuthConfig {
    /// One token for every stream subscriber, who may then follow any session it names by
    /// session id and user id: for a one-user machine. Shared servers identify users with
    /// --subscriber-tokens-file or --jupyterhub-api-url.
    #[arg(
        long = "subscriber-token", value_name = "TOKEN",
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
    /// A file of `<user> <token>` lines: a subscriber presenting a user's token follows and
    /// cancels only that Spark Connect user's sessions. Read again when it changes.
    #[arg(
        long = "subscriber-tokens-file",
        value_name = "FILE",
        env = "SPARKSCOPE_SUBSCRIBER_TOKENS_FILE"
    )]
    pub tokens_file: Option<PathBuf>,
    /// JupyterHub's API URL (e.g. http://127.0.0.1:8081/hub/api): a subscriber presenting a
    /// Hub user's API token (the kernel's JUPYTERHUB_API_TOKEN) is that user.
    #[arg(
        long = "jupyterhub-api-url", value_name = "URL",
        env = "SPARKSCOPE_JUPYTERHUB_API_URL",
        value_parser = non_empty
    )]
    pub jupyterhub_api: Option<String>,
    /// How long JupyterHub's answer about a token is trusted, in seconds.
    #[arg(
        long = "jupyterhub-cache-seconds",
        value_name = "SECONDS",
        value_parser = seconds,
        default_value = "60",
        env = "SPARKSCOPE_JUPYTERHUB_CACHE_SECONDS"
    )]
    pub jupyterhub_cache: Duration,
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

/// Identifies subscribers.
pub struct SubscriberAuth {
    cfg: SubscriberAuthConfig,
    file: Mutex<TokenFile>,
    hub: Option<HubClient>,
}

impl SubscriberAuth {
    pub fn new(cfg: SubscriberAuthConfig) -> SubscriberAuth {
        let hub = cfg
            .jupyterhub_api
            .clone()
            .map(|api| HubClient::new(api, cfg.jupyterhub_cache));
        SubscriberAuth {
            file: Mutex::new(TokenFile::default()),
            hub,
            cfg,
        }
    }

    /// Who holds `token`.
    pub async fn identify(&self, token: Option<&str>) -> Result<Principal, AuthError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return if self.cfg.anonymous {
                Ok(Principal::Shared)
            } else {
                Err(AuthError::Missing)
            };
        };
        if self.cfg.shared.as_ref().is_some_and(|s| s.matches(token)) {
            return Ok(Principal::Shared);
        }
        if let Some(path) = &self.cfg.tokens_file {
            let found = self
                .file
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .user_of(path, token);
            if let Some(user) = found {
                return Ok(Principal::User(user));
            }
        }
        if let Some(hub) = &self.hub {
            return hub.user_of(token).await.map(Principal::User);
        }
        if self.cfg.anonymous {
            return Ok(Principal::Shared);
        }
        Err(AuthError::Refused)
    }
}

/// `<user> <token>` per line (`#` starts a comment), read again when its modification time
/// changes.
#[derive(Default)]
struct TokenFile {
    modified: Option<SystemTime>,
    tokens: Vec<(String, Secret)>,
}

impl TokenFile {
    fn user_of(&mut self, path: &PathBuf, token: &str) -> Option<String> {
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        if modified != self.modified {
            self.modified = modified;
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    self.tokens = parse_token_file(&text);
                    tracing::info!(path = %path.display(), users = self.tokens.len(), "read the subscriber token file");
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the subscriber token file; nobody is let in by it");
                    self.tokens.clear();
                }
            }
        }
        // Every entry is compared, so the time taken says nothing about which one matched.
        let mut found = None;
        for (user, secret) in &self.tokens {
            if secret.matches(token) && found.is_none() {
                found = Some(user.clone());
            }
        }
        found
    }
}

fn parse_token_file(text: &str) -> Vec<(String, Secret)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| {
            let (user, token) = l.split_once(char::is_whitespace)?;
            Some((user.to_owned(), Secret::new(Some(token))?))
        })
        .collect()
}

/// Asks JupyterHub who owns a token (`GET <api>/user`, which any token may call), and keeps
/// the answer for a while: keyed by the token's SHA-256, never the token.
struct HubClient {
    api: String,
    ttl: Duration,
    http: reqwest::Client,
    cache: Mutex<HubCache>,
}

/// The Hub's answers by the SHA-256 of the token, each with the time it expires.
type HubCache = HashMap<[u8; 32], (Instant, Result<String, AuthError>)>;

/// Tokens remembered at most.
const HUB_CACHE_ENTRIES: usize = 4096;
/// A refusal is remembered this long, so a guessing client cannot make the agent flood the Hub.
const HUB_REFUSAL_TTL: Duration = Duration::from_secs(5);

impl HubClient {
    fn new(api: String, ttl: Duration) -> HubClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        HubClient {
            api: api.trim_end_matches('/').to_owned(),
            ttl,
            http,
            cache: Mutex::default(),
        }
    }

    async fn user_of(&self, token: &str) -> Result<String, AuthError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = Instant::now();
        if let Some((until, answer)) = self.lock().get(&key) {
            if *until > now {
                return answer.clone();
            }
        }
        let answer = self.ask(token).await;
        let ttl = match &answer {
            Ok(_) => self.ttl,
            Err(AuthError::Refused) => HUB_REFUSAL_TTL,
            Err(_) => return answer, // the Hub was not reached: ask again next time
        };
        let mut cache = self.lock();
        if cache.len() >= HUB_CACHE_ENTRIES {
            cache.retain(|_, (until, _)| *until > now);
            if cache.len() >= HUB_CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(key, (now + ttl, answer.clone()));
        answer
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HubCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_come_from_the_token_file_and_it_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens");
        std::fs::write(
            &path,
            "# notebook users\nalice a-token\nbob   b-token # desk 2\n",
        )
        .expect("write");
        let auth = SubscriberAuth::new(SubscriberAuthConfig {
            shared: Secret::new(Some("shared")),
            tokens_file: Some(path.clone()),
            ..SubscriberAuthConfig::default()
        });
        assert_eq!(
            auth.identify(Some("a-token")).await,
            Ok(Principal::User("alice".into()))
        );
        assert_eq!(
            auth.identify(Some("b-token")).await,
            Ok(Principal::User("bob".into()))
        );
        assert_eq!(auth.identify(Some("shared")).await, Ok(Principal::Shared));
        assert_eq!(auth.identify(Some("nope")).await, Err(AuthError::Refused));
        assert_eq!(auth.identify(None).await, Err(AuthError::Missing));
        // Bob's token is revoked; the file's time moves on.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "alice a-token\n").expect("write");
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(later))
            .expect("touch");
        assert_eq!(
            auth.identify(Some("b-token")).await,
            Err(AuthError::Refused)
        );
        assert!(Principal::User("alice".into()).may_follow("alice"));
        assert!(!Principal::User("alice".into()).may_follow("bob"));
        assert!(Principal::Shared.may_follow("anyone"));
    }
}
