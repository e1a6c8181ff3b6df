//! `manager`: Darter's control plane — clusters and their scopes, scheduler and
//! seed-peer membership, users and tokens, and (in later slices) the REST API,
//! console and jobs.
//!
//! Layout:
//! - [`store`]: the persistence layer. It owns every SQL statement in the crate
//!   and runs the same schema on SQLite, PostgreSQL and MySQL/MariaDB, picked
//!   by URL scheme ([`store::Store::open`]). Its domain types ([`store::Cluster`],
//!   [`store::Member`], [`store::User`], [`store::Token`]) are what the rest of
//!   the manager works with; its one error type is [`store::StoreError`].
//! - [`matching`]: which cluster a peer belongs to (ARCHITECTURE.md §5), a pure
//!   function over the stored clusters that says which rule matched.
//! - `main.rs`: the binary; for now it serves `/metrics` and `/healthz` only and
//!   does not open the store yet.

pub mod matching;
pub mod store;
