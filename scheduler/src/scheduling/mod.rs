//! Scheduling: which parents a peer gets ([`candidates`]), what a peer
//! is told when it registers or reschedules ([`decide`]), and which
//! downloading peers a new holder is pushed to as a parent ([`introduce`]), with
//! a piece grant per parent ([`grants`]). Pure functions over the model,
//! unit-tested without a server.

pub mod candidates;
pub mod decide;
pub mod grants;
pub mod introduce;

pub use self::candidates::{Candidate, candidate_parents, children_counts};
pub use self::decide::{Answer, Decision, apply, decide, decide_exhausted, decide_without_seeds, response, seed_order};
pub use self::grants::Grants;
pub use self::introduce::{Occasion, introductions};
