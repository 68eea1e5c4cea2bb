//! Whether a new version of a job's code may take over from the running one,
//! and with what (see `ARCHITECTURE.md`, "Hot upgrade").
//!
//! Compatibility is judged by operator names: every operator that keeps
//! something across batches (`update_state_by_key`, `map_with_state`,
//! `window`, `reduce_by_key_and_window`) is found in the new graph by its
//! state name. The same kind with the same key and state codecs (and, for
//! windows, the same window and records) keeps what it holds; an operator
//! new in the new graph starts empty. An operator that is gone, or whose
//! codecs changed, is refused unless its state is reset (`--reset-state
//! NAME`). An operator whose name is derived from its place in the graph is
//! refused too: that name does not follow the operator when the graph
//! changes. The sources must stay as they are: their positions, logs and
//! blocks belong to the job, not to a version.
//!
//! A refusal carries every reason and a diff of the two graphs.

use std::collections::{BTreeMap, BTreeSet};

use crate::data::Codec;
use crate::exec::Handover;
use crate::plan::{JobGraph, Node, NodeId, NodeKind};

/// Why a new version cannot take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Each reason, one sentence naming the operator and what to do.
    pub reasons: Vec<String>,
    /// The two graphs, one node per line, as a unified diff.
    pub diff: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for reason in &self.reasons {
            writeln!(f, "- {reason}")?;
        }
        write!(
            f,
            "graph diff (- running version, + new version):\n{}",
            self.diff
        )
    }
}

/// What an accepted upgrade does with what the running version holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Takeover {
    /// What moves to the new version's executor.
    pub handover: Handover,
    /// Operators whose state is dropped (`--reset-state`).
    pub reset: Vec<String>,
    /// Operators of the new version that start empty.
    pub fresh: Vec<String>,
}

/// Judges whether `new` may take over from `old`, resetting the state of
/// the operators named in `reset`.
pub fn compare(old: &JobGraph, new: &JobGraph, reset: &[String]) -> Result<Takeover, Refusal> {
    let mut reasons = Vec::new();
    let sources = |graph: &JobGraph| -> Vec<(NodeId, String)> {
        graph
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n.kind, NodeKind::Source(_)))
            .map(|(i, n)| (i, format!("{:?}", n.kind)))
            .collect()
    };
    if sources(old) != sources(new) {
        reasons.push(
            "the sources changed (a source's kind, parameters or place in the graph): a job's \
             sources, their positions and logs stay with the job; deploy the new version as a \
             new job instead"
                .to_string(),
        );
    }
    let old_kept = keeping(old);
    let new_kept = keeping(new);
    let mut takeover = Takeover::default();
    let reset_set: BTreeSet<&String> = reset.iter().collect();
    for name in reset {
        if !old_kept.contains_key(name) {
            let known: Vec<&str> = old_kept.keys().map(String::as_str).collect();
            reasons.push(format!(
                "--reset-state {name}: the running version has no operator that keeps state \
                 under that name (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    for (name, &(i, node)) in &old_kept {
        if reset_set.contains(name) {
            takeover.reset.push(name.clone());
            continue;
        }
        if node.uid.is_none() {
            reasons.push(format!(
                "`{}` keeps state under `{name}`, a name derived from its place in the graph, \
                 which does not follow it when the graph changes: name it with \
                 `.name(\"...\")` (the same name in both versions; the running version must \
                 already have it), or give --reset-state {name} to start it empty",
                node.name
            ));
            continue;
        }
        let Some(&(j, successor)) = new_kept.get(name) else {
            reasons.push(format!(
                "`{}` is gone from the new version: what it keeps would be lost; give \
                 --reset-state {name} to drop it",
                node.display()
            ));
            continue;
        };
        if let Some(change) = incompatibility(old, node, new, successor) {
            reasons.push(format!(
                "`{name}`: {change}, so the new version cannot read what it keeps; give \
                 --reset-state {name} to start it empty"
            ));
            continue;
        }
        if keeps_state(&node.kind) {
            takeover.handover.state.push(name.clone());
        }
        if keeps_batches(&node.kind) {
            takeover.handover.windows.push((i, j));
        }
    }
    takeover.fresh = new_kept
        .keys()
        .filter(|name| !old_kept.contains_key(*name))
        .cloned()
        .collect();
    if reasons.is_empty() {
        Ok(takeover)
    } else {
        Err(Refusal {
            reasons,
            diff: diff(old, new),
        })
    }
}

/// The operators of `graph` that keep something across batches, by state
/// name.
fn keeping(graph: &JobGraph) -> BTreeMap<String, (NodeId, &Node)> {
    graph
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| keeps_state(&n.kind) || keeps_batches(&n.kind))
        .map(|(i, n)| (n.state_name(i), (i, n)))
        .collect()
}

/// Keeps values in the state store under its name.
fn keeps_state(kind: &NodeKind) -> bool {
    matches!(
        kind,
        NodeKind::UpdateStateByKey { .. }
            | NodeKind::MapWithState { .. }
            | NodeKind::ReduceByKeyAndWindow { .. }
    )
}

/// Keeps past batches (windows).
fn keeps_batches(kind: &NodeKind) -> bool {
    matches!(
        kind,
        NodeKind::Window(_) | NodeKind::ReduceByKeyAndWindow { .. }
    )
}

/// What changed between `a` (of graph `ga`) and `b` (of `gb`) that makes
/// what `a` keeps unreadable for `b`, if anything.
fn incompatibility(ga: &JobGraph, a: &Node, gb: &JobGraph, b: &Node) -> Option<String> {
    if a.kind.label() != b.kind.label() {
        return Some(format!(
            "it was a `{}` and is now a `{}`",
            a.kind.label(),
            b.kind.label()
        ));
    }
    let key = |g: &JobGraph, n: &Node| -> Option<Codec> {
        let input = g.nodes.get(*n.inputs.first()?)?;
        match input.codec.parse::<Codec>().ok()? {
            Codec::Tuple(mut parts) if parts.len() == 2 => Some(parts.swap_remove(0)),
            _ => None,
        }
    };
    if key(ga, a) != key(gb, b) {
        return Some(format!(
            "its key codec changed (input `{}` → `{}`)",
            input_codec(ga, a),
            input_codec(gb, b)
        ));
    }
    match (&a.kind, &b.kind) {
        (
            NodeKind::UpdateStateByKey { state_codec: x, .. },
            NodeKind::UpdateStateByKey { state_codec: y, .. },
        )
        | (
            NodeKind::MapWithState { state_codec: x, .. },
            NodeKind::MapWithState { state_codec: y, .. },
        ) if x.parse::<Codec>().ok() != y.parse::<Codec>().ok() => {
            Some(format!("its state codec changed from `{x}` to `{y}`"))
        }
        (NodeKind::Window(x), NodeKind::Window(y))
        | (
            NodeKind::ReduceByKeyAndWindow { window: x, .. },
            NodeKind::ReduceByKeyAndWindow { window: y, .. },
        ) if x != y => Some(format!("its window changed from {x:?} to {y:?}")),
        (NodeKind::Window(_), NodeKind::Window(_))
        | (NodeKind::ReduceByKeyAndWindow { .. }, NodeKind::ReduceByKeyAndWindow { .. })
            if a.codec.parse::<Codec>().ok() != b.codec.parse::<Codec>().ok() =>
        {
            Some(format!(
                "its records' codec changed from `{}` to `{}`",
                a.codec, b.codec
            ))
        }
        _ => None,
    }
}

fn input_codec<'a>(graph: &'a JobGraph, node: &Node) -> &'a str {
    node.inputs
        .first()
        .and_then(|&i| graph.nodes.get(i))
        .map_or("", |n| n.codec.as_str())
}

/// The two graphs, one node per line, as a unified diff.
pub fn diff(old: &JobGraph, new: &JobGraph) -> String {
    let lines = |graph: &JobGraph| -> String {
        graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| format!("#{i} {}\n", n.describe()))
            .collect()
    };
    let (old, new) = (lines(old), lines(new));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(100)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{SourceSpec, Window};
    use std::time::Duration;

    fn node(name: &str, uid: Option<&str>, kind: NodeKind, inputs: &[NodeId], codec: &str) -> Node {
        Node {
            name: name.into(),
            uid: uid.map(Into::into),
            kind,
            inputs: inputs.to_vec(),
            codec: codec.into(),
            checkpoint: None,
        }
    }

    /// A socket source, a `map` to pairs, `update_state_by_key` (named
    /// `uid`, state `state`) and a windowed count.
    fn graph(uid: Option<&str>, state: &str, window_secs: u64) -> JobGraph {
        JobGraph {
            name: "job".into(),
            nodes: vec![
                node(
                    "socket",
                    None,
                    NodeKind::Source(SourceSpec::SocketText {
                        host: "localhost".into(),
                        port: 9999,
                    }),
                    &[],
                    "string",
                ),
                node(
                    "map at lib.rs:1",
                    None,
                    NodeKind::Map(0),
                    &[0],
                    "tuple<string, i64>",
                ),
                node(
                    "update_state_by_key at lib.rs:2",
                    uid,
                    NodeKind::UpdateStateByKey {
                        function: 1,
                        state_codec: state.into(),
                        partitions: None,
                    },
                    &[1],
                    &format!("tuple<string, {state}>"),
                ),
                node(
                    "window at lib.rs:3",
                    Some("recent"),
                    NodeKind::Window(Window {
                        length: Duration::from_secs(window_secs),
                        slide: None,
                    }),
                    &[1],
                    "tuple<string, i64>",
                ),
            ],
            broadcasts: Vec::new(),
            remember: None,
        }
    }

    #[test]
    fn named_operators_with_the_same_codecs_carry_what_they_keep() {
        let old = graph(Some("counts"), "i64", 30);
        let mut new = old.clone();
        new.nodes[1].name = "map at lib.rs:9".into();
        let takeover = compare(&old, &new, &[]).expect("compatible");
        assert_eq!(takeover.handover.state, ["counts"]);
        assert_eq!(takeover.handover.windows, [(3, 3)]);
        assert!(takeover.fresh.is_empty() && takeover.reset.is_empty());
    }

    #[test]
    fn a_moved_operator_is_found_by_name() {
        let old = graph(Some("counts"), "i64", 30);
        let mut new = old.clone();
        // A filter inserted before the stateful operators moves them.
        new.nodes
            .insert(1, node("filter", None, NodeKind::Filter(7), &[0], "string"));
        new.nodes[2].inputs = vec![1];
        new.nodes[3].inputs = vec![2];
        new.nodes[4].inputs = vec![2];
        let takeover = compare(&old, &new, &[]).expect("compatible");
        assert_eq!(takeover.handover.windows, [(3, 4)]);
    }

    #[test]
    fn a_changed_state_codec_is_refused_with_a_diff_unless_reset() {
        let old = graph(Some("counts"), "i64", 30);
        let new = graph(Some("counts"), "string", 30);
        let refusal = compare(&old, &new, &[]).expect_err("refused");
        assert_eq!(refusal.reasons.len(), 1, "{refusal}");
        assert!(
            refusal.reasons[0].contains("`counts`: its state codec changed from `i64` to `string`")
        );
        assert!(refusal.reasons[0].contains("--reset-state counts"));
        assert!(
            refusal
                .diff
                .contains("-#2 `counts (update_state_by_key at lib.rs:2)`"),
            "{}",
            refusal.diff
        );
        assert!(
            refusal
                .diff
                .contains("+#2 `counts (update_state_by_key at lib.rs:2)`"),
            "{}",
            refusal.diff
        );
        let takeover = compare(&old, &new, &["counts".into()]).expect("reset");
        assert_eq!(takeover.reset, ["counts"]);
        assert!(takeover.handover.state.is_empty());
    }

    #[test]
    fn a_gone_operator_and_a_changed_window_are_refused_and_new_ones_start_empty() {
        let old = graph(Some("counts"), "i64", 30);
        let mut new = graph(Some("totals"), "i64", 60);
        new.nodes[3].uid = Some("recent".into());
        let refusal = compare(&old, &new, &[]).expect_err("refused");
        assert_eq!(refusal.reasons.len(), 2, "{refusal}");
        assert!(
            refusal
                .reasons
                .iter()
                .any(|r| r.contains("is gone from the new version"))
        );
        assert!(
            refusal
                .reasons
                .iter()
                .any(|r| r.contains("its window changed"))
        );
        let takeover =
            compare(&old, &new, &["counts".into(), "recent".into()]).expect("both reset");
        assert_eq!(takeover.fresh, ["totals"]);
    }

    #[test]
    fn a_position_named_stateful_operator_is_refused_with_how_to_name_it() {
        let old = graph(None, "i64", 30);
        let refusal = compare(&old, &old.clone(), &[]).expect_err("refused");
        assert!(
            refusal.reasons[0].contains("`update_state_by_key#2`")
                && refusal.reasons[0].contains(".name(\"...\")"),
            "{}",
            refusal.reasons[0]
        );
        assert!(compare(&old, &old.clone(), &["update_state_by_key#2".into()]).is_ok());
    }

    #[test]
    fn changed_sources_and_unknown_reset_names_are_refused() {
        let old = graph(Some("counts"), "i64", 30);
        let mut new = old.clone();
        new.nodes[0].kind = NodeKind::Source(SourceSpec::SocketText {
            host: "localhost".into(),
            port: 9998,
        });
        let refusal = compare(&old, &new, &["nope".into()]).expect_err("refused");
        assert!(
            refusal
                .reasons
                .iter()
                .any(|r| r.contains("the sources changed"))
        );
        assert!(
            refusal
                .reasons
                .iter()
                .any(|r| r.contains("--reset-state nope") && r.contains("it has: counts, recent"))
        );
    }
}
