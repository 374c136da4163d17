//! SQL executions and their physical plans, with live per-operator metrics: what a cell's Plan
//! view shows. A plan arrives with its execution's start (and again with each adaptive re-plan);
//! its operators' metric totals arrive coalesced from the listener (`SparkscopeSqlMetrics`), read
//! from the driver's accumulators. Executions are bounded per application
//! (`--max-sql-executions`, the oldest ended goes first) and so are a plan's nodes
//! (`--max-plan-nodes`).

use super::event::{Plan, SqlExecutionStart};
use std::collections::{BTreeMap, BTreeSet};

/// One SQL execution.
#[derive(Debug, Clone, Default)]
pub struct SqlExecution {
    pub execution_id: i64,
    pub description: String,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub error: Option<String>,
    pub plan: Plan,
    /// 0 for the plan at the start; each adaptive re-plan that changed it adds one.
    pub plan_version: u32,
    /// The generation of the last change to the plan.
    pub plan_updated: u64,
    /// Accumulator id → (its total, the generation it last changed in); only ids of the plan.
    pub values: BTreeMap<i64, (i64, u64)>,
    /// The jobs it ran, in order.
    pub job_ids: Vec<i32>,
    /// The generation of its last change of any kind.
    pub updated: u64,
}

impl SqlExecution {
    /// Whether the accumulator belongs to one of the plan's operators.
    fn has_metric(&self, id: i64) -> bool {
        self.plan
            .nodes
            .iter()
            .any(|n| n.metrics.iter().any(|m| m.accumulator_id == id))
    }
}

/// The SQL executions of one application.
#[derive(Debug, Default)]
pub struct SqlExecutions {
    pub(super) by_id: BTreeMap<i64, SqlExecution>,
    /// Executions started while a listener's snapshot is under way: those held as running that
    /// are not among them ended while no listener was connected.
    pub(super) resent: Option<BTreeSet<i64>>,
}

/// What a bound cut: (executions evicted, plan nodes dropped).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SqlCuts {
    pub executions: u64,
    pub plan_nodes: u64,
}

impl SqlExecutions {
    pub fn get(&self, id: i64) -> Option<&SqlExecution> {
        self.by_id.get(&id)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &SqlExecution> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// An execution started (or is resent by a snapshot): a known one keeps its values and
    /// takes the plan only if it changed.
    pub fn started(
        &mut self,
        g: u64,
        s: SqlExecutionStart,
        max_executions: usize,
        max_nodes: usize,
    ) -> SqlCuts {
        let mut cuts = SqlCuts::default();
        if let Some(r) = &mut self.resent {
            r.insert(s.execution_id);
        }
        let e = self.by_id.entry(s.execution_id).or_default();
        let fresh = e.updated == 0;
        e.execution_id = s.execution_id;
        e.updated = g;
        if fresh || !s.description.is_empty() {
            e.description = s.description;
        }
        if s.time > 0 {
            e.start_ms = s.time;
        }
        if let Some(plan) = s.plan {
            cuts.plan_nodes = set_plan(e, g, plan, max_nodes, fresh);
        }
        cuts.executions = self.evict(max_executions);
        cuts
    }

    /// An adaptive re-plan: the new plan, if it differs from the one held.
    pub fn plan_updated(&mut self, g: u64, id: i64, plan: Plan, max_nodes: usize) -> u64 {
        match self.by_id.get_mut(&id) {
            Some(e) => set_plan(e, g, plan, max_nodes, false),
            None => 0,
        }
    }

    /// Metric totals that changed; values of accumulators the plan does not have are ignored.
    pub fn metrics(&mut self, g: u64, id: i64, values: &[(i64, i64)]) {
        let Some(e) = self.by_id.get_mut(&id) else {
            return;
        };
        let mut changed = false;
        for &(acc, v) in values {
            if e.values.get(&acc).is_some_and(|(old, _)| *old == v) {
                continue;
            }
            if e.values.contains_key(&acc) || e.has_metric(acc) {
                e.values.insert(acc, (v, g));
                changed = true;
            }
        }
        if changed {
            e.updated = g;
        }
    }

    pub fn ended(&mut self, g: u64, id: i64, time: i64, error: Option<String>) {
        if let Some(e) = self.by_id.get_mut(&id) {
            e.end_ms = Some(time.max(e.start_ms));
            e.error = error.filter(|s| !s.is_empty());
            e.updated = g;
        }
    }

    pub fn job_started(&mut self, g: u64, id: i64, job_id: i32) {
        if let Some(e) = self.by_id.get_mut(&id) {
            if !e.job_ids.contains(&job_id) {
                e.job_ids.push(job_id);
                e.updated = g;
            }
        }
    }

    /// A listener's snapshot begins: note which executions it resends.
    pub fn begin_snapshot(&mut self) {
        self.resent = Some(BTreeSet::new());
    }

    /// It ended: a running execution it did not resend ended while nobody listened (when
    /// exactly and how is not known; its end is the snapshot's time).
    pub fn end_snapshot(&mut self, g: u64, time: i64) {
        let Some(resent) = self.resent.take() else {
            return;
        };
        for e in self.by_id.values_mut() {
            if e.end_ms.is_none() && !resent.contains(&e.execution_id) {
                e.end_ms = Some(time.max(e.start_ms));
                e.updated = g;
            }
        }
    }

    /// Past the bound the oldest ended execution goes, else the oldest.
    fn evict(&mut self, max: usize) -> u64 {
        let mut n = 0;
        while self.by_id.len() > max.max(1) {
            let victim = self
                .by_id
                .values()
                .find(|e| e.end_ms.is_some())
                .or_else(|| self.by_id.values().next())
                .map(|e| e.execution_id);
            match victim {
                Some(id) => {
                    self.by_id.remove(&id);
                    n += 1;
                }
                None => break,
            }
        }
        n
    }
}

/// Takes a plan (cut to `max_nodes`, pre-order, so every kept node's parent is kept); the
/// version goes up when it replaced a different one. Returns the nodes the bound dropped here.
fn set_plan(e: &mut SqlExecution, g: u64, mut plan: Plan, max_nodes: usize, fresh: bool) -> u64 {
    let mut dropped = 0;
    if plan.nodes.len() > max_nodes {
        dropped = (plan.nodes.len() - max_nodes) as u64;
        plan.nodes.truncate(max_nodes);
        plan.nodes_dropped = plan
            .nodes_dropped
            .saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
    }
    if plan == e.plan {
        return dropped;
    }
    if !fresh && !e.plan.nodes.is_empty() {
        e.plan_version = e.plan_version.saturating_add(1);
    }
    e.plan = plan;
    e.plan_updated = g;
    e.updated = g;
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{PlanMetric, PlanNode};

    fn plan(names: &[&str], first_acc: i64) -> Plan {
        Plan {
            nodes: names
                .iter()
                .enumerate()
                .map(|(i, n)| PlanNode {
                    parent: i as i32 - 1,
                    name: (*n).to_owned(),
                    detail: String::new(),
                    metrics: vec![PlanMetric {
                        name: "number of output rows".into(),
                        kind: "sum".into(),
                        accumulator_id: first_acc + i as i64,
                    }],
                })
                .collect(),
            nodes_dropped: 0,
        }
    }

    fn start(id: i64, p: Option<Plan>) -> SqlExecutionStart {
        SqlExecutionStart {
            execution_id: id,
            time: 10,
            job_tags: vec![],
            description: "count".into(),
            plan: p,
        }
    }

    #[test]
    fn metrics_of_the_plan_are_kept_with_their_generation_and_others_ignored() {
        let mut s = SqlExecutions::default();
        s.started(
            1,
            start(3, Some(plan(&["HashAggregate", "Range"], 10))),
            10,
            100,
        );
        s.metrics(2, 3, &[(10, 5), (11, 7), (99, 1)]);
        let e = s.get(3).expect("kept");
        assert_eq!(e.values.get(&10), Some(&(5, 2)));
        assert_eq!(e.values.get(&99), None, "not the plan's");
        s.metrics(3, 3, &[(10, 5)]);
        assert_eq!(
            s.get(3).expect("kept").updated,
            2,
            "unchanged value: no change"
        );
    }

    #[test]
    fn a_replan_bumps_the_version_only_when_the_plan_changed() {
        let mut s = SqlExecutions::default();
        s.started(1, start(3, Some(plan(&["SortMergeJoin"], 10))), 10, 100);
        s.plan_updated(2, 3, plan(&["SortMergeJoin"], 10), 100);
        assert_eq!(s.get(3).expect("kept").plan_version, 0);
        s.plan_updated(3, 3, plan(&["BroadcastHashJoin"], 10), 100);
        let e = s.get(3).expect("kept");
        assert_eq!((e.plan_version, e.plan_updated), (1, 3));
        // A snapshot's resend of the start keeps the held values and the newer plan.
        s.metrics(4, 3, &[(10, 8)]);
        s.started(5, start(3, None), 10, 100);
        let e = s.get(3).expect("kept");
        assert_eq!(e.values.get(&10), Some(&(8, 4)));
        assert_eq!(e.plan.nodes[0].name, "BroadcastHashJoin");
    }

    #[test]
    fn plans_and_executions_are_bounded() {
        let mut s = SqlExecutions::default();
        let cuts = s.started(1, start(1, Some(plan(&["a", "b", "c"], 0))), 2, 2);
        assert_eq!(cuts.plan_nodes, 1);
        assert_eq!(s.get(1).expect("kept").plan.nodes_dropped, 1);
        s.ended(2, 1, 20, None);
        s.started(3, start(2, None), 2, 2);
        let cuts = s.started(4, start(3, None), 2, 2);
        assert_eq!(cuts.executions, 1);
        assert!(s.get(1).is_none(), "the ended one went first");
        assert!(s.get(2).is_some() && s.get(3).is_some());
    }

    #[test]
    fn a_snapshot_ends_the_running_executions_it_did_not_resend() {
        let mut s = SqlExecutions::default();
        s.started(1, start(1, None), 10, 10);
        s.started(2, start(2, None), 10, 10);
        s.begin_snapshot();
        s.started(3, start(2, None), 10, 10);
        s.end_snapshot(4, 50);
        assert_eq!(s.get(1).expect("kept").end_ms, Some(50));
        assert_eq!(s.get(2).expect("kept").end_ms, None);
    }
}
