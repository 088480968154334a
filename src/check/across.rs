//! The checks across a collection's elements: the same target twice (redundant, or two
//! conflicting assignments), and a group both included and excluded.
//!
//! Each element's target is held as borrowed slices of the parsed body and the pairs are
//! found by sorting, so a collection of half a million elements costs a few words per element
//! and n log n time; an element's canonical text is made only for a repeated target, to tell
//! "the same" from "in conflict".

use super::{Code, Deviation, Found};
use crate::json::Json;
use std::cmp::Ordering;

const GROUP: &str = "microsoft.graph.groupAssignmentTarget";
const EXCLUSION: &str = "microsoft.graph.exclusionGroupAssignmentTarget";

/// One element's target.
pub(super) struct Aimed<'j> {
    /// The element's index in its collection.
    pub index: u32,
    /// The target's type, as the registry spells it (as sent, if the registry does not know it).
    pub ty: &'j str,
    /// Its group or collection id, as sent.
    pub id: &'j str,
    /// The whole element.
    pub element: &'j Json<'j>,
}

impl Aimed<'_> {
    fn at(&self, collection: &str) -> String {
        format!("{collection}/{}/target", self.index)
    }

    /// Type and id as a message names them (ids lower-cased: Entra ids are case-insensitive).
    fn what(&self) -> String {
        if self.id.is_empty() {
            self.ty.to_string()
        } else {
            format!("{} {}", self.ty, self.id.to_ascii_lowercase())
        }
    }

    /// The element, canonical and case-folded (types, ids and enum members are
    /// case-insensitive): the same element twice is redundant, two different ones conflict.
    fn folded(&self) -> String {
        crate::key::to_canonical_string(self.element).to_ascii_lowercase()
    }
}

/// Type, then id, without regard to ASCII case, then place: equal targets end up side by
/// side, the first of them first.
fn order(a: &Aimed<'_>, b: &Aimed<'_>) -> Ordering {
    folded(a.ty)
        .cmp(folded(b.ty))
        .then_with(|| folded(a.id).cmp(folded(b.id)))
        .then(a.index.cmp(&b.index))
}

fn folded(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.bytes().map(|b| b.to_ascii_lowercase())
}

fn same_target(a: &Aimed<'_>, b: &Aimed<'_>) -> bool {
    a.ty.eq_ignore_ascii_case(b.ty) && a.id.eq_ignore_ascii_case(b.id)
}

/// The findings across the targets of the collection at `collection`. `targets` is sorted
/// here (rather than indexed by a hash table, which took more than the parsed body): each
/// repeated target is then next to its first, and an exclusion finds its group's first
/// inclusion by binary search. Findings come out in body order.
pub(super) fn check(targets: &mut [Aimed<'_>], collection: &str, out: &mut Found) {
    targets.sort_unstable_by(order);
    // (where, the target it repeats or contradicts), in the sorted order.
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    let mut first = 0;
    for n in 1..targets.len() {
        if same_target(&targets[first], &targets[n]) {
            repeats.push((n, first));
        } else {
            first = n;
        }
    }
    repeats.sort_unstable_by_key(|(n, _)| targets[*n].index);
    for (n, first) in repeats {
        let (t, first) = (&targets[n], &targets[first]);
        let message = if first.folded() == t.folded() {
            format!(
                "the same assignment as {} ({}): send it once",
                first.at(collection),
                t.what()
            )
        } else {
            format!(
                "another assignment for the same target as {} ({}) with other settings: \
                 they conflict, and Intune keeps one of them",
                first.at(collection),
                t.what()
            )
        };
        out.push(Deviation::new(
            Code::DuplicateTarget,
            t.at(collection),
            message,
        ));
    }
    let mut contradictions: Vec<(usize, usize)> = Vec::new();
    for (n, excluded) in targets.iter().enumerate() {
        if !excluded.ty.eq_ignore_ascii_case(EXCLUSION) || excluded.id.is_empty() {
            continue;
        }
        let probe = Aimed {
            index: 0,
            ty: GROUP,
            id: excluded.id,
            element: excluded.element,
        };
        // The first inclusion of the group, if any: the lowest place sorts first.
        let at = targets.partition_point(|t| order(t, &probe) == Ordering::Less);
        if targets.get(at).is_some_and(|t| same_target(t, &probe)) {
            contradictions.push((n, at));
        }
    }
    contradictions.sort_unstable_by_key(|(n, _)| targets[*n].index);
    for (n, included) in contradictions {
        let (excluded, included) = (&targets[n], &targets[included]);
        let (at, other) = (excluded.at(collection), included.at(collection));
        out.push(Deviation::new(
            Code::GroupIncludedAndExcluded,
            &at,
            format!(
                "group {} is included at {other} and excluded at {at}; Intune's result is not what either intends",
                excluded.id.to_ascii_lowercase()
            ),
        ));
    }
}
