//! What every part's flags share: defaults read back from the flags themselves, and the value
//! parsers for durations and for values that must not be empty.

use clap::{Args, FromArgMatches};
use std::time::Duration;

/// `impl Default` for a part's configuration: its flags parsed from nothing ([`defaults`]).
macro_rules! default_from_flags {
    ($t:ty) => {
        impl Default for $t {
            fn default() -> Self {
                $crate::flags::defaults()
            }
        }
    };
}
pub(crate) use default_from_flags;

/// A part's configuration with every flag at its default, whatever the environment says.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    // Every default is checked to parse by the tests below, for every part.
    #[allow(clippy::expect_used)]
    parse_without_env(std::iter::empty::<std::ffi::OsString>())
        .expect("every flag's default parses")
}

/// A part's configuration from these flags alone, whatever the environment says.
pub fn parse_without_env<T, I, S>(flags: I) -> Result<T, clap::Error>
where
    T: Args + FromArgMatches,
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cmd = T::augment_args(clap::Command::new("sparkscope").no_binary_name(true))
        .mut_args(|a| a.env(None::<&str>));
    T::from_arg_matches(&cmd.try_get_matches_from(flags)?)
}

/// A flag's value in whole seconds.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|e| format!("{e} (a whole number of seconds)"))
}

/// A flag's value in whole milliseconds.
pub fn millis(s: &str) -> Result<Duration, String> {
    s.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| format!("{e} (a whole number of milliseconds)"))
}

/// An empty value on the command line is refused rather than taken for "unset": an empty token
/// would let anyone in, an empty address would turn a feature off without a word. (An empty
/// environment variable is unset: the command line drops it before parsing.)
pub fn non_empty(s: &str) -> Result<String, String> {
    let v = s.trim();
    if v.is_empty() {
        Err("the value is empty: leave the flag unset instead".to_owned())
    } else {
        Ok(v.to_owned())
    }
}
