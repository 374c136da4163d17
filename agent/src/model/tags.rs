//! Spark Connect job tags, read back into (user, session, operation, client tag).
//!
//! The Connect server stamps each job with `SparkConnect_OperationTag_User_<u>_Session_<s>_Operation_<o>`
//! and, per client tag, `SparkConnect_SessionTag_User_<u>_Session_<s>_Tag_<tag>`
//! (`ExecuteHolder.scala`). User ids may be empty or contain `_`; session and operation ids are
//! UUIDs, so parsing anchors on them. The model prefers the fields of `ConnectOperationStarted`
//! and parses tags only when that event was not seen.

const OP_PREFIX: &str = "SparkConnect_OperationTag_User_";
const SESSION_PREFIX: &str = "SparkConnect_SessionTag_User_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationTag<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub operation_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionTag<'a> {
    pub user_id: &'a str,
    pub session_id: &'a str,
    pub tag: &'a str,
}

pub fn is_operation_tag(tag: &str) -> bool {
    tag.starts_with(OP_PREFIX)
}

/// A 36-character UUID in its textual form (hex digits and dashes at 8-4-4-4-12).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses an operation job tag. Also accepts the Spark 3.5 form in which user and session were
/// swapped (SPARK-47921): there the UUID stands where the user id should.
pub fn parse_operation_tag(tag: &str) -> Option<OperationTag<'_>> {
    let rest = tag.strip_prefix(OP_PREFIX)?;
    // rest = <user>_Session_<uuid>_Operation_<uuid>
    // Every split below is at a byte offset counted from ASCII anchors; `split_at_checked`
    // refuses one that falls inside a multi-byte character, which no valid tag has there.
    const OP: &str = "_Operation_";
    if rest.len() < OP.len() + 36 {
        return None;
    }
    let (head, op) = rest.split_at_checked(rest.len() - 36)?;
    let head = head.strip_suffix(OP)?;
    if !is_uuid(op) {
        return None;
    }
    const SESSION: &str = "_Session_";
    // Spark 4: the session UUID is the last 36 characters of head.
    if head.len() >= SESSION.len() + 36 {
        if let Some((user_part, session)) = head
            .split_at_checked(head.len() - 36)
            .filter(|(_, s)| is_uuid(s))
        {
            if let Some(user) = user_part.strip_suffix(SESSION) {
                return Some(OperationTag {
                    user_id: user,
                    session_id: session,
                    operation_id: op,
                });
            }
        }
    }
    // Spark 3.5 swap: User_<session uuid>_Session_<user>
    if head.len() >= 36 + SESSION.len() {
        if let Some((session, after)) = head.split_at_checked(36).filter(|(s, _)| is_uuid(s)) {
            if let Some(user) = after.strip_prefix(SESSION) {
                return Some(OperationTag {
                    user_id: user,
                    session_id: session,
                    operation_id: op,
                });
            }
        }
    }
    None
}

/// Parses a session (client) tag. When the user and session are known (from the operation tag),
/// pass them as `known` so a client tag that itself contains `_Session_` cannot confuse the split.
pub fn parse_session_tag<'a>(tag: &'a str, known: Option<(&str, &str)>) -> Option<SessionTag<'a>> {
    let rest = tag.strip_prefix(SESSION_PREFIX)?;
    if let Some((user, session)) = known {
        let after_user = rest.strip_prefix(user)?;
        let after = after_user
            .strip_prefix("_Session_")?
            .strip_prefix(session)?;
        let client = after.strip_prefix("_Tag_")?;
        let user_id = &rest[..user.len()];
        let session_id = &after_user["_Session_".len()..][..session.len()];
        return Some(SessionTag {
            user_id,
            session_id,
            tag: client,
        });
    }
    // Without context: the first `_Session_<uuid>_Tag_` splits user from tag.
    let mut from = 0;
    while let Some(pos) = rest[from..].find("_Session_") {
        let at = from + pos;
        let uuid_start = at + "_Session_".len();
        if let Some(session) = rest.get(uuid_start..uuid_start + 36) {
            if is_uuid(session) {
                if let Some(client) = rest[uuid_start + 36..].strip_prefix("_Tag_") {
                    return Some(SessionTag {
                        user_id: &rest[..at],
                        session_id: session,
                        tag: client,
                    });
                }
            }
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "39ed1fc5-ed53-4117-945b-fae9e26c0ce8";
    const O: &str = "95b7284b-ed00-4470-91a8-2e06100c9fd1";

    #[test]
    fn operation_tag_plain_user() {
        let t = format!("SparkConnect_OperationTag_User_alice_Session_{S}_Operation_{O}");
        let p = parse_operation_tag(&t).expect("parses");
        assert_eq!(
            p,
            OperationTag {
                user_id: "alice",
                session_id: S,
                operation_id: O
            }
        );
    }

    #[test]
    fn operation_tag_user_with_underscores_and_session_words() {
        let t =
            format!("SparkConnect_OperationTag_User_bob_smith_Session_x_Session_{S}_Operation_{O}");
        let p = parse_operation_tag(&t).expect("parses");
        assert_eq!(p.user_id, "bob_smith_Session_x");
        assert_eq!(p.session_id, S);
        assert_eq!(p.operation_id, O);
    }

    #[test]
    fn operation_tag_empty_user() {
        let t = format!("SparkConnect_OperationTag_User__Session_{S}_Operation_{O}");
        let p = parse_operation_tag(&t).expect("parses");
        assert_eq!(p.user_id, "");
        assert_eq!(p.session_id, S);
    }

    #[test]
    fn operation_tag_spark35_swapped() {
        let t = format!("SparkConnect_OperationTag_User_{S}_Session_carol_Operation_{O}");
        let p = parse_operation_tag(&t).expect("parses");
        assert_eq!(
            p,
            OperationTag {
                user_id: "carol",
                session_id: S,
                operation_id: O
            }
        );
    }

    #[test]
    fn operation_tag_rejects_non_uuid_and_other_tags() {
        assert!(
            parse_operation_tag("SparkConnect_OperationTag_User_a_Session_b_Operation_c").is_none()
        );
        assert!(parse_operation_tag(&format!("spark-session-{S}")).is_none());
        assert!(parse_operation_tag("").is_none());
        let upper = format!(
            "SparkConnect_OperationTag_User_a_Session_{S}_Operation_{}",
            &O[..35]
        );
        assert!(parse_operation_tag(&upper).is_none());
    }

    #[test]
    fn session_tag_with_and_without_context() {
        let t =
            format!("SparkConnect_SessionTag_User_bob_smith_Session_{S}_Tag_cell_Session_7_Tag_x");
        let p = parse_session_tag(&t, None).expect("parses");
        assert_eq!(
            p,
            SessionTag {
                user_id: "bob_smith",
                session_id: S,
                tag: "cell_Session_7_Tag_x"
            }
        );
        let p = parse_session_tag(&t, Some(("bob_smith", S))).expect("parses");
        assert_eq!(p.tag, "cell_Session_7_Tag_x");
        assert!(parse_session_tag(&t, Some(("alice", S))).is_none());
    }

    #[test]
    fn session_tag_empty_user() {
        let t = format!("SparkConnect_SessionTag_User__Session_{S}_Tag_nb-cell-1");
        let p = parse_session_tag(&t, None).expect("parses");
        assert_eq!(
            p,
            SessionTag {
                user_id: "",
                session_id: S,
                tag: "nb-cell-1"
            }
        );
    }

    #[test]
    fn multi_byte_characters_where_the_parser_splits_are_refused_not_a_panic() {
        // 'é' is two bytes: each tag puts one across an offset the parser counts to.
        let op_cut = format!(
            "SparkConnect_OperationTag_User_a_Session_{S}_Operation_é{}",
            &O[1..]
        );
        assert!(parse_operation_tag(&op_cut).is_none());
        let session_cut = format!(
            "SparkConnect_OperationTag_User_a_Session_é{}_Operation_{O}",
            &S[1..]
        );
        assert!(parse_operation_tag(&session_cut).is_none());
        let swapped_cut = format!(
            "SparkConnect_OperationTag_User_{}é_Session_carol_Operation_{O}",
            &S[..35]
        );
        assert!(parse_operation_tag(&swapped_cut).is_none());
        let user = format!("SparkConnect_OperationTag_User_jürgen_Session_{S}_Operation_{O}");
        assert_eq!(
            parse_operation_tag(&user).map(|p| p.user_id),
            Some("jürgen")
        );
        for t in [
            "SparkConnect_SessionTag_User_é_Session_é",
            "SparkConnect_SessionTag_User_",
        ] {
            assert!(parse_session_tag(t, None).is_none());
            assert!(parse_session_tag(t, Some(("é", S))).is_none());
        }
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid(S));
        assert!(!is_uuid("39ed1fc5ed53-4117-945b-fae9e26c0ce8x"));
        assert!(!is_uuid("zzzzzzzz-ed53-4117-945b-fae9e26c0ce8"));
    }
}
