//! What discovery knows between rescans: each schema the last list held,
//! and whether it can be folded. Decided here, as plain data: which names
//! a rescan must vet (new ones, and those unfoldable before, so that a
//! GRANT is taken at the next rescan), and what the rescan hands over.

use std::collections::HashMap;
use std::sync::Arc;

use super::scan::Found;

#[derive(Debug, Default)]
pub struct Known {
    /// Schema → foldable.
    schemas: HashMap<Arc<str>, bool>,
}

/// What one rescan hands over and says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Every foldable schema, in byte order.
    pub foldable: Vec<Arc<str>>,
    /// Schemas found unfoldable that were not so at the last rescan: one
    /// warning each.
    pub newly_unfoldable: Vec<Arc<str>>,
}

impl Known {
    /// The names of `listed` (the list step's answer) to vet.
    pub fn to_vet(&self, listed: &[Arc<str>]) -> Vec<Arc<str>> {
        listed
            .iter()
            .filter(|name| self.schemas.get(*name) != Some(&true))
            .cloned()
            .collect()
    }

    /// Takes in a rescan: `listed` from the list step (byte order),
    /// `vetted` for the names [`Known::to_vet`] gave. A name vetted but
    /// not answered for (its table went between the two queries) is
    /// dropped; a name no longer listed is forgotten.
    pub fn update(&mut self, listed: &[Arc<str>], vetted: &[Found]) -> Update {
        let answered: HashMap<&str, bool> = vetted
            .iter()
            .map(|found| (&*found.schema, found.foldable))
            .collect();
        let mut next = HashMap::with_capacity(listed.len());
        let mut update = Update::default();
        for name in listed {
            let before = self.schemas.get(name).copied();
            let foldable = match (answered.get(&**name), before) {
                (Some(&now), _) => now,
                (None, Some(true)) => true,
                // Asked about, and gone before the answer.
                (None, _) => continue,
            };
            if foldable {
                update.foldable.push(Arc::clone(name));
            } else if before != Some(false) {
                update.newly_unfoldable.push(Arc::clone(name));
            }
            next.insert(Arc::clone(name), foldable);
        }
        self.schemas = next;
        update
    }

    /// Vet `schema` again at the next rescan (its worker was refused a
    /// privilege).
    pub fn forget(&mut self, schema: &str) {
        self.schemas.remove(schema);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<Arc<str>> {
        names.iter().map(|&name| name.into()).collect()
    }

    fn found(name: &str, foldable: bool) -> Found {
        Found {
            schema: name.into(),
            foldable,
        }
    }

    #[test]
    fn the_first_rescan_vets_everything_and_later_ones_only_what_is_new() {
        let mut known = Known::default();
        let listed = names(&["a", "b", "c"]);
        assert_eq!(known.to_vet(&listed), listed);
        let update = known.update(
            &listed,
            &[found("a", true), found("b", false), found("c", true)],
        );
        assert_eq!(update.foldable, names(&["a", "c"]));
        assert_eq!(update.newly_unfoldable, names(&["b"]));
        // Next: d is new, b is asked again (a GRANT may have come).
        let listed = names(&["a", "b", "c", "d"]);
        assert_eq!(known.to_vet(&listed), names(&["b", "d"]));
        let update = known.update(&listed, &[found("b", false), found("d", true)]);
        assert_eq!(update.foldable, names(&["a", "c", "d"]));
        assert!(update.newly_unfoldable.is_empty(), "b was said once");
    }

    #[test]
    fn a_grant_is_taken_and_a_schema_that_went_is_forgotten() {
        let mut known = Known::default();
        known.update(&names(&["a", "b"]), &[found("a", true), found("b", false)]);
        let update = known.update(&names(&["b"]), &[found("b", true)]);
        assert_eq!(update.foldable, names(&["b"]));
        // a went: when it comes back, it is vetted again.
        assert_eq!(known.to_vet(&names(&["a", "b"])), names(&["a"]));
    }

    #[test]
    fn a_name_whose_table_went_between_the_two_queries_is_dropped() {
        let mut known = Known::default();
        let update = known.update(&names(&["a", "b"]), &[found("a", true)]);
        assert_eq!(update.foldable, names(&["a"]));
        assert_eq!(known.to_vet(&names(&["a", "b"])), names(&["b"]));
    }

    #[test]
    fn a_forgotten_schema_is_vetted_again_and_said_once_if_unfoldable() {
        let mut known = Known::default();
        known.update(&names(&["a"]), &[found("a", true)]);
        known.forget("a");
        assert_eq!(known.to_vet(&names(&["a"])), names(&["a"]));
        let update = known.update(&names(&["a"]), &[found("a", false)]);
        assert!(update.foldable.is_empty());
        assert_eq!(update.newly_unfoldable, names(&["a"]));
    }
}
