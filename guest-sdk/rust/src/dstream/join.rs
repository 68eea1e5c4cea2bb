//! Joins of two pair streams, batch by batch (Spark's `join`,
//! `leftOuterJoin`, `rightOuterJoin`, `fullOuterJoin`, `cogroup`), and of a
//! pair stream with a reference dataset. Both sides are shuffled by the same
//! partitioner, by key bytes; both must have the same slide (join windows
//! with windows of the same slide).
//!
//! ```
//! use std::time::Duration;
//! use sluice_guest::prelude::*;
//! # let ctx = StreamingContext::new("doc");
//!
//! let impressions: DStream<(String, String)> = ctx.queue_stream(vec![]);
//! let clicks: DStream<(String, ())> = ctx.queue_stream(vec![]);
//! let clicked = impressions
//!     .window_length(Duration::from_secs(60))
//!     .join(&clicks.window_length(Duration::from_secs(20)));
//! ```
//!
//! Only pair streams have these operators, so joining a stream that is not
//! one does not compile:
//!
//! ```compile_fail
//! use sluice_guest::prelude::*;
//! # let ctx = StreamingContext::new("doc");
//! let lines = ctx.socket_text_stream("localhost", 9999);
//! let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
//! let nope = lines.join(&pairs);
//! ```

use std::hash::Hash;
use std::panic::Location;
use std::rc::Rc;

use crate::bindings::sluice::plugin::types::{self, JoinKind, NodeKind};
use crate::codec::Data;
use crate::dstream::DStream;
use crate::graph::node_name;

/// Joins of pair streams. (The result types are spelled out: they are what
/// the user gets.)
#[allow(clippy::type_complexity)]
impl<K, V> DStream<(K, V)>
where
    K: Data + Hash + Eq,
    V: Data,
{
    /// A node reading this stream and `other`.
    fn binary<W: Data, O: Data>(
        &self,
        name: &Rc<str>,
        other: &DStream<(K, W)>,
        kind: NodeKind,
    ) -> DStream<O> {
        let mut graph = self.graph.borrow_mut();
        if !Rc::ptr_eq(&self.graph, &other.graph) {
            graph.error(format!(
                "{name}: the other stream comes from another StreamingContext"
            ));
        }
        let id = graph.add_node(name, kind, vec![self.id, other.id], O::codec());
        drop(graph);
        DStream::new(Rc::clone(&self.graph), id)
    }

    #[track_caller]
    fn join_kind<W: Data, O: Data>(
        &self,
        op: &str,
        other: &DStream<(K, W)>,
        kind: JoinKind,
        partitions: Option<u32>,
    ) -> DStream<O> {
        let name = node_name(op, Location::caller());
        self.check_partitions(&name, partitions);
        self.binary(
            &name,
            other,
            NodeKind::Join(types::Join { kind, partitions }),
        )
    }

    /// For every key in both streams in a batch, every pair of a value of
    /// this stream and a value of `other` (Spark's `join`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let b: DStream<(String, bool)> = ctx.queue_stream(vec![]);
    /// let joined: DStream<(String, (i64, bool))> = a.join(&b);
    /// ```
    #[track_caller]
    pub fn join<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (V, W))> {
        self.join_kind("join", other, JoinKind::Inner, None)
    }

    /// [`join`](DStream::join) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined = a.join_with_partitions(&b, 8);
    /// ```
    #[track_caller]
    pub fn join_with_partitions<W: Data>(
        &self,
        other: &DStream<(K, W)>,
        partitions: u32,
    ) -> DStream<(K, (V, W))> {
        self.join_kind(
            "join_with_partitions",
            other,
            JoinKind::Inner,
            Some(partitions),
        )
    }

    /// Like [`join`](DStream::join), and every value of a key that `other`
    /// does not have, with `None` (Spark's `leftOuterJoin`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined: DStream<(String, (i64, Option<i64>))> = a.left_outer_join(&b);
    /// ```
    #[track_caller]
    pub fn left_outer_join<W: Data>(
        &self,
        other: &DStream<(K, W)>,
    ) -> DStream<(K, (V, Option<W>))> {
        self.join_kind("left_outer_join", other, JoinKind::LeftOuter, None)
    }

    /// [`left_outer_join`](DStream::left_outer_join) into `partitions`
    /// partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined = a.left_outer_join_with_partitions(&b, 8);
    /// ```
    #[track_caller]
    pub fn left_outer_join_with_partitions<W: Data>(
        &self,
        other: &DStream<(K, W)>,
        partitions: u32,
    ) -> DStream<(K, (V, Option<W>))> {
        self.join_kind(
            "left_outer_join_with_partitions",
            other,
            JoinKind::LeftOuter,
            Some(partitions),
        )
    }

    /// Like [`join`](DStream::join), and every value of `other` for a key
    /// this stream does not have, with `None` (Spark's `rightOuterJoin`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined: DStream<(String, (Option<i64>, i64))> = a.right_outer_join(&b);
    /// ```
    #[track_caller]
    pub fn right_outer_join<W: Data>(
        &self,
        other: &DStream<(K, W)>,
    ) -> DStream<(K, (Option<V>, W))> {
        self.join_kind("right_outer_join", other, JoinKind::RightOuter, None)
    }

    /// [`right_outer_join`](DStream::right_outer_join) into `partitions`
    /// partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined = a.right_outer_join_with_partitions(&b, 8);
    /// ```
    #[track_caller]
    pub fn right_outer_join_with_partitions<W: Data>(
        &self,
        other: &DStream<(K, W)>,
        partitions: u32,
    ) -> DStream<(K, (Option<V>, W))> {
        self.join_kind(
            "right_outer_join_with_partitions",
            other,
            JoinKind::RightOuter,
            Some(partitions),
        )
    }

    /// Both outer joins at once (Spark's `fullOuterJoin`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined: DStream<(String, (Option<i64>, Option<i64>))> = a.full_outer_join(&b);
    /// ```
    #[track_caller]
    pub fn full_outer_join<W: Data>(
        &self,
        other: &DStream<(K, W)>,
    ) -> DStream<(K, (Option<V>, Option<W>))> {
        self.join_kind("full_outer_join", other, JoinKind::FullOuter, None)
    }

    /// [`full_outer_join`](DStream::full_outer_join) into `partitions`
    /// partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let joined = a.full_outer_join_with_partitions(&b, 8);
    /// ```
    #[track_caller]
    pub fn full_outer_join_with_partitions<W: Data>(
        &self,
        other: &DStream<(K, W)>,
        partitions: u32,
    ) -> DStream<(K, (Option<V>, Option<W>))> {
        self.join_kind(
            "full_outer_join_with_partitions",
            other,
            JoinKind::FullOuter,
            Some(partitions),
        )
    }

    /// For every key of either stream in a batch, all its values in this
    /// stream and all in `other` (Spark's `cogroup`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let groups: DStream<(String, (Vec<i64>, Vec<i64>))> = a.cogroup(&b);
    /// ```
    #[track_caller]
    pub fn cogroup<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (Vec<V>, Vec<W>))> {
        let name = node_name("cogroup", Location::caller());
        self.binary(&name, other, NodeKind::Cogroup(None))
    }

    /// [`cogroup`](DStream::cogroup) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let a: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// # let b: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let groups = a.cogroup_with_partitions(&b, 8);
    /// ```
    #[track_caller]
    pub fn cogroup_with_partitions<W: Data>(
        &self,
        other: &DStream<(K, W)>,
        partitions: u32,
    ) -> DStream<(K, (Vec<V>, Vec<W>))> {
        let name = node_name("cogroup_with_partitions", Location::caller());
        self.check_partitions(&name, Some(partitions));
        self.binary(&name, other, NodeKind::Cogroup(Some(partitions)))
    }

    #[track_caller]
    fn dataset<O: Data>(&self, op: &str, location: String, kind: JoinKind) -> DStream<O> {
        let name = node_name(op, Location::caller());
        self.child(
            &name,
            NodeKind::JoinDataset(types::JoinDataset { location, kind }),
        )
    }

    /// Joins every batch with a reference dataset of `(K, W)` records: a
    /// text file at `location` (a local path or an object store URL such as
    /// `s3://bucket/ads.tsv`), one `key<TAB>value` record per line (format in
    /// `wit/sluice.wit`, "Reference datasets"). The host re-reads it when it
    /// changes, so the job's reference data can be swapped without a
    /// restart (the guide's "dynamically change the dataset").
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let clicks: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let with_campaign: DStream<(String, (i64, String))> =
    ///     clicks.join_dataset::<String>("/data/campaigns.tsv");
    /// ```
    #[track_caller]
    pub fn join_dataset<W: Data>(&self, location: impl Into<String>) -> DStream<(K, (V, W))> {
        self.dataset("join_dataset", location.into(), JoinKind::Inner)
    }

    /// [`join_dataset`](DStream::join_dataset) keeping the records whose key
    /// the dataset does not have, with `None`.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let clicks: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let with_campaign: DStream<(String, (i64, Option<String>))> =
    ///     clicks.left_outer_join_dataset::<String>("s3://ads/campaigns.tsv");
    /// ```
    #[track_caller]
    pub fn left_outer_join_dataset<W: Data>(
        &self,
        location: impl Into<String>,
    ) -> DStream<(K, (V, Option<W>))> {
        self.dataset(
            "left_outer_join_dataset",
            location.into(),
            JoinKind::LeftOuter,
        )
    }
}
