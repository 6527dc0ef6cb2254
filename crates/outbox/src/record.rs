//! The completion record and its fingerprints.

use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::Timestamp;

/// The `kind` of a completion record (a child finished a turn).
pub const KIND_FINISHED: &str = "finished";

/// The longest `child_session_id`, `target_session_id`, `last_output_hash`,
/// `turn_fingerprint` or `turn_id` a commit accepts, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// The longest turn key ([`Record::turn_key`]) kept as it is; a longer one
/// (only a line written by another program can have one) is replaced by a
/// fixed-length digest, so no record can make the consumed ledger huge.
pub const MAX_TURN_KEY_BYTES: usize = MAX_FIELD_BYTES + 17;

/// The largest `done_summary` a commit keeps, in bytes.
pub const MAX_SUMMARY_BYTES: usize = 32 * 1024;

/// What ends a summary that [`Record::cap_summary`] cut.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// One record of a parent's inbox: a child's status transition or, when
/// [`kind`](Record::kind) is `"finished"`, its completion.
///
/// The serde form is agent-deck's on-disk JSON line: the fields in this
/// order, the ones documented as *omitted when empty* left out when empty or
/// zero, unknown fields ignored and `null` read as the empty value, so files
/// written by either implementation are readable by the other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct Record {
    /// The child session that produced the record.
    #[serde(deserialize_with = "nullable")]
    pub child_session_id: String,
    /// The child's display title.
    #[serde(deserialize_with = "nullable")]
    pub child_title: String,
    /// The profile the child runs under.
    #[serde(deserialize_with = "nullable")]
    pub profile: String,
    /// Status before the transition.
    #[serde(deserialize_with = "nullable")]
    pub from_status: String,
    /// Status after the transition.
    #[serde(deserialize_with = "nullable")]
    pub to_status: String,
    /// When the record was emitted (not part of any fingerprint).
    pub timestamp: Timestamp,
    /// A finer-grained state; omitted when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub substate: String,
    /// Hash of the child's last output, identifies a turn; omitted when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub last_output_hash: String,
    /// The parent the record is addressed to; stamped by commit when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub target_session_id: String,
    /// The kind of target; omitted when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub target_kind: String,
    /// Outcome of an earlier delivery attempt; omitted when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub delivery_result: String,
    /// `"finished"` for a completion, empty for a status transition.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub kind: String,
    /// The completion's status (e.g. `success`); omitted when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub done_status: String,
    /// The completion's summary, capped at [`MAX_SUMMARY_BYTES`] by commit.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub done_summary: String,
    /// Identifies the child's turn ([`turn_fingerprint`]); stamped by commit.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub turn_fingerprint: String,
    /// Delivery attempts so far; omitted when zero.
    #[serde(skip_serializing_if = "is_zero", deserialize_with = "nullable")]
    pub attempts: i64,
    /// Why delivery gave up; omitted when empty.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub dead_letter_reason: String,
    /// The event fingerprint ([`event_fingerprint`]); stamped by commit.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub fp: String,
    /// This outbox's turn identity, when it differs from
    /// `turn_fingerprint` (see [`Record::turn_key`]); stamped by commit,
    /// omitted when empty. Not an agent-deck field: agent-deck ignores it.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub turn_id: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Reads `null` as the type's default, like Go's `encoding/json`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl Record {
    /// A completion record: `child` finished a turn with `done_status`.
    pub fn finished(child: impl Into<String>, done_status: impl Into<String>) -> Self {
        Self {
            child_session_id: child.into(),
            kind: KIND_FINISHED.to_owned(),
            done_status: done_status.into(),
            timestamp: Timestamp::now(),
            ..Self::default()
        }
    }

    /// A status-transition record: `child` went from `from` to `to`.
    pub fn transition(
        child: impl Into<String>,
        from: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        Self {
            child_session_id: child.into(),
            from_status: from.into(),
            to_status: to.into(),
            timestamp: Timestamp::now(),
            ..Self::default()
        }
    }

    /// Whether this is a completion record (`kind == "finished"`).
    pub fn is_finished(&self) -> bool {
        self.kind == KIND_FINISHED
    }

    /// The record's turn identity, the key of the consumed ledger: two
    /// records with one key are one turn, delivered at most once.
    ///
    /// By precedence: the stamped [`turn_id`](Record::turn_id); else the
    /// stamped [`turn_fingerprint`](Record::turn_fingerprint) (so lines of
    /// agent-deck's files deduplicate exactly as agent-deck does); else
    /// [`turn_fingerprint`] derived from the fields (legacy lines). A key
    /// longer than [`MAX_TURN_KEY_BYTES`] is replaced by
    /// `#` and the 64 hex chars of its SHA-256.
    pub fn turn_key(&self) -> String {
        let key = if !self.turn_id.is_empty() {
            self.turn_id.clone()
        } else if !self.turn_fingerprint.is_empty() {
            self.turn_fingerprint.clone()
        } else {
            turn_fingerprint(self)
        };
        if key.len() > MAX_TURN_KEY_BYTES {
            format!("#{}", hex(&Sha256::digest(key.as_bytes())))
        } else {
            key
        }
    }

    /// The first id or key field longer than [`MAX_FIELD_BYTES`]: its name and
    /// length.
    pub(crate) fn oversized_field(&self) -> Option<(&'static str, usize)> {
        [
            ("child_session_id", &self.child_session_id),
            ("target_session_id", &self.target_session_id),
            ("last_output_hash", &self.last_output_hash),
            ("turn_fingerprint", &self.turn_fingerprint),
            ("turn_id", &self.turn_id),
        ]
        .into_iter()
        .find(|(_, v)| v.len() > MAX_FIELD_BYTES)
        .map(|(name, v)| (name, v.len()))
    }

    /// The first field a store keys or indexes on that contains U+0000
    /// (NUL), which no id or status has and PostgreSQL's `text` cannot
    /// hold. Free text (`done_summary`, `child_title`, ...) may contain it:
    /// the JSON line escapes it.
    pub(crate) fn field_with_nul(&self) -> Option<&'static str> {
        [
            ("child_session_id", &self.child_session_id),
            ("target_session_id", &self.target_session_id),
            ("from_status", &self.from_status),
            ("to_status", &self.to_status),
            ("last_output_hash", &self.last_output_hash),
            ("turn_fingerprint", &self.turn_fingerprint),
            ("turn_id", &self.turn_id),
        ]
        .into_iter()
        .find(|(_, v)| v.contains('\0'))
        .map(|(name, _)| name)
    }

    /// Cuts `done_summary` to at most [`MAX_SUMMARY_BYTES`], keeping a
    /// prefix that ends on a character boundary followed by
    /// [`TRUNCATION_MARKER`]. Returns whether it cut anything.
    pub fn cap_summary(&mut self) -> bool {
        if self.done_summary.len() <= MAX_SUMMARY_BYTES {
            return false;
        }
        let mut keep = MAX_SUMMARY_BYTES - TRUNCATION_MARKER.len();
        while !self.done_summary.is_char_boundary(keep) {
            keep -= 1;
        }
        self.done_summary.truncate(keep);
        self.done_summary.push_str(TRUNCATION_MARKER);
        true
    }
}

/// Unicode lowercase, one character at a time (as Go's `strings.ToLower`,
/// which has no context-dependent mappings such as a final sigma).
fn lower(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The event fingerprint (`fp`): 64 lowercase hex chars of SHA-256 over
/// `trim(child)|lower(trim(from))|lower(trim(to))|trim(last_output_hash)`,
/// followed for a record with a `kind` by
/// `|kind|lower(trim(done_status))|trim(done_summary)`.
///
/// It names one logical event; the timestamp is not part of it.
pub fn event_fingerprint(r: &Record) -> String {
    let mut parts = vec![
        r.child_session_id.trim().to_owned(),
        lower(r.from_status.trim()),
        lower(r.to_status.trim()),
        r.last_output_hash.trim().to_owned(),
    ];
    if !r.kind.is_empty() {
        parts.push(r.kind.clone());
        parts.push(lower(r.done_status.trim()));
        parts.push(r.done_summary.trim().to_owned());
    }
    hex(&Sha256::digest(parts.join("|").as_bytes()))
}

/// The turn fingerprint: `child@` and the first 16 hex chars of SHA-256 of
/// `child@signal`, where the signal is, by precedence,
/// `finished|lower(trim(done_status))|trim(done_summary)` for a completion,
/// `turn|trim(last_output_hash)` when that hash is set, else
/// `flip|lower(trim(from))>lower(trim(to))`.
///
/// Two emits of the same turn share it, so a parent acts on a turn once.
pub fn turn_fingerprint(r: &Record) -> String {
    let child = r.child_session_id.trim();
    let hash = r.last_output_hash.trim();
    let signal = if r.is_finished() {
        format!(
            "finished|{}|{}",
            lower(r.done_status.trim()),
            r.done_summary.trim()
        )
    } else if !hash.is_empty() {
        format!("turn|{hash}")
    } else {
        format!(
            "flip|{}>{}",
            lower(r.from_status.trim()),
            lower(r.to_status.trim())
        )
    };
    let digest = hex(&Sha256::digest(format!("{child}@{signal}").as_bytes()));
    format!("{child}@{}", &digest[..16])
}

/// The turn identity a commit stamps into [`Record::turn_id`], or `None`
/// when it is the agent-deck [`turn_fingerprint`] itself.
///
/// agent-deck's fingerprint of a completion ignores `last_output_hash`, so a
/// child that finishes a second turn with the same status and summary would
/// look like a re-emit of the first. For a completion with a non-empty hash
/// the identity is therefore `child@` and the first 16 hex chars of SHA-256
/// of `child@finished|lower(trim(done_status))|trim(done_summary)|trim(hash)`.
/// Every other record keeps agent-deck's fingerprint: a status flip with a
/// hash is already keyed on it, and a record without a hash carries nothing
/// that tells a new turn from a re-emit of an old one.
pub fn turn_id(r: &Record) -> Option<String> {
    let hash = r.last_output_hash.trim();
    if !r.is_finished() || hash.is_empty() {
        return None;
    }
    let child = r.child_session_id.trim();
    let signal = format!(
        "finished|{}|{}|{hash}",
        lower(r.done_status.trim()),
        r.done_summary.trim()
    );
    let digest = hex(&Sha256::digest(format!("{child}@{signal}").as_bytes()));
    Some(format!("{child}@{}", &digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(s: &str) -> String {
        hex(&Sha256::digest(s.as_bytes()))
    }

    #[test]
    fn sha256_hex_matches_a_known_vector() {
        assert_eq!(
            sha_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn event_fingerprint_trims_lowers_and_appends_kind() {
        let mut r = Record {
            child_session_id: " c1 ".into(),
            from_status: " Running".into(),
            to_status: "WAITING ".into(),
            last_output_hash: " h ".into(),
            ..Record::default()
        };
        assert_eq!(event_fingerprint(&r), sha_hex("c1|running|waiting|h"));
        r.kind = KIND_FINISHED.into();
        r.done_status = " Success ".into();
        r.done_summary = " all good \n".into();
        assert_eq!(
            event_fingerprint(&r),
            sha_hex("c1|running|waiting|h|finished|success|all good")
        );
        // The timestamp is not part of it.
        let mut later = r.clone();
        later.timestamp = Timestamp::now();
        assert_eq!(event_fingerprint(&r), event_fingerprint(&later));
    }

    #[test]
    fn turn_fingerprint_follows_the_signal_precedence() {
        let mut r = Record {
            child_session_id: "c1".into(),
            from_status: "Running".into(),
            to_status: "Waiting".into(),
            ..Record::default()
        };
        let flip = turn_fingerprint(&r);
        assert_eq!(
            flip,
            format!("c1@{}", &sha_hex("c1@flip|running>waiting")[..16])
        );
        r.last_output_hash = " abc ".into();
        assert_eq!(
            turn_fingerprint(&r),
            format!("c1@{}", &sha_hex("c1@turn|abc")[..16])
        );
        r.kind = KIND_FINISHED.into();
        r.done_status = "DONE".into();
        r.done_summary = " ok ".into();
        assert_eq!(
            turn_fingerprint(&r),
            format!("c1@{}", &sha_hex("c1@finished|done|ok")[..16])
        );
    }

    #[test]
    fn summary_cap_keeps_a_prefix_on_a_char_boundary() {
        let mut r = Record {
            done_summary: "é".repeat(MAX_SUMMARY_BYTES),
            ..Record::default()
        };
        assert!(r.cap_summary());
        assert!(r.done_summary.len() <= MAX_SUMMARY_BYTES);
        assert!(r.done_summary.ends_with(TRUNCATION_MARKER));
        assert!(r.done_summary.len() > MAX_SUMMARY_BYTES - TRUNCATION_MARKER.len() - 2);

        let exact = "x".repeat(MAX_SUMMARY_BYTES);
        let mut r = Record {
            done_summary: exact.clone(),
            ..Record::default()
        };
        assert!(!r.cap_summary());
        assert_eq!(r.done_summary, exact);
    }

    #[test]
    fn lower_is_per_character() {
        assert_eq!(lower("ÀB"), "àb");
        assert_eq!(lower("ΣΑΣ"), "σασ");
    }
}
