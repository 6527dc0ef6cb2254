//! `outbox show`: one pending record in full, the command a delivery names
//! for a record it showed cut ([`outbox::delivery`]); and the show command
//! the Stop hook's reason names ([`render_options`]).

use std::io::Write as _;

use clap::Args;
use outbox::delivery::{self, RenderOptions, Surface};
use outbox::{Record, Store};

use crate::store::Location;
use crate::{EXIT_NO, Failure, check_parent, open_existing, print};

/// Print one pending record of a parent in full: the record a delivery
/// (the Stop hook's reason) showed cut, or any other.
///
/// --child C picks the child's pending record (one per child: its latest);
/// --turn KEY the pending record of that turn (the `turn "..."` a delivery
/// names, or the fingerprint `commit` printed). Text output frames it as a
/// delivery does: the tool's own lines start with "outbox: " and quote
/// every value as a JSON string; the child's text follows, every line
/// prefixed "| ", with control and invisible characters escaped. --json
/// prints the record exactly, as one JSON object in the on-disk field
/// format.
///
/// Only pending records can be shown: a record shown by a delivery stays
/// pending until that delivery is confirmed (consumed), so it can be shown
/// until then, cut or not. Once consumed it is gone from the store, and
/// `show` answers as for a record that never existed: nothing on stdout,
/// one line on stderr, exit 1. Consumes nothing and takes no lock.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  outbox show --parent conductor --child w1
  outbox show --parent conductor --turn 'w1@97bdaa20c61ff15c' --json")]
pub struct ShowArgs {
    /// The parent session whose pending record is shown.
    #[arg(long, value_name = "ID")]
    pub parent: String,
    /// The child whose pending record is shown.
    #[arg(
        long,
        value_name = "ID",
        required_unless_present = "turn",
        conflicts_with = "turn"
    )]
    pub child: Option<String>,
    /// The turn whose pending record is shown (its turn key or turn
    /// fingerprint).
    #[arg(long, value_name = "KEY")]
    pub turn: Option<String>,
    /// The record as one JSON object in the on-disk field format.
    #[arg(long)]
    pub json: bool,
}

/// Whether `r` is what `args` asks for.
fn selected(args: &ShowArgs, r: &Record) -> bool {
    match (&args.child, &args.turn) {
        (Some(child), _) => r.child_session_id == *child,
        (None, Some(turn)) => r.turn_key() == *turn || r.turn_fingerprint == *turn,
        (None, None) => false,
    }
}

/// `outbox show`.
pub fn run(loc: &Location, args: &ShowArgs) -> Result<u8, Failure> {
    check_parent(&args.parent)?;
    let records = match open_existing(loc)? {
        Some(store) => store.peek(&args.parent)?,
        None => Vec::new(),
    };
    let Some(record) = records.iter().find(|r| selected(args, r)) else {
        let which = match (&args.child, &args.turn) {
            (Some(child), _) => format!("of child {child:?}"),
            (_, turn) => format!("of turn {:?}", turn.as_deref().unwrap_or_default()),
        };
        let _ = writeln!(
            std::io::stderr(),
            "outbox: no pending record {which} for parent {:?} (a record can be shown only \
             while it is pending; once its delivery is confirmed it is consumed)",
            args.parent
        );
        return Ok(EXIT_NO);
    };
    let mut out = if args.json {
        serde_json::to_string(record).map_err(Failure::error)?
    } else {
        let opts = render_options(loc, &args.parent);
        delivery::render(std::slice::from_ref(record), Surface::Text, &opts).text
    };
    out.push('\n');
    print(out.as_bytes())
}

/// The render options of a delivery for `parent` on `loc`: its show
/// command names this binary and the store by absolute path (as `outbox
/// hooks` does: `private::store_words`), so it runs from a model's shell
/// as it is; a store URL appears without its password.
pub fn render_options(loc: &Location, parent: &str) -> RenderOptions {
    let word = delivery::shell_word;
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(word))
        .unwrap_or_else(|| "outbox".to_owned());
    // As a hook names it (a store file, a shared root's flag), never with
    // a password.
    let store = crate::private::store_words(loc, word);
    let mut opts = RenderOptions::new(parent);
    opts.show_command = format!(
        "{binary}{store} show {}",
        delivery::shell_flag("parent", parent)
    );
    opts
}
