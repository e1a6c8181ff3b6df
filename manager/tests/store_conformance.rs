//! One conformance suite for the manager's store, run against every backend.
//!
//! Every case runs on SQLite (a temp file) always, on PostgreSQL when
//! `DARTER_TEST_POSTGRES_URL` is set and on MySQL/MariaDB when
//! `DARTER_TEST_MYSQL_URL` is set; each run gets a fresh database
//! (`darter_test_<random>`) that is dropped afterwards. Without the URL a
//! case prints `SKIPPED ...` and passes, unless `CI` is set: CI never skips.
//!
//! ```text
//! DARTER_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//! DARTER_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test cargo nextest run -p manager
//! ```

use std::net::IpAddr;

use manager::store::{
    ClusterConfig, MemberKind, MemberState, NewCluster, NewToken, NewUser, Registration, Role, Scopes, Store,
    StoreError, Timestamp, UserUpdate,
};

mod support;
use testkit::db::{self as harness, Backend};

/// Generates one `#[tokio::test]` per case in a module per backend.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $case() { super::harness::run(super::Backend::Sqlite, super::cases::$case).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $case() { super::harness::run(super::Backend::Postgres, super::cases::$case).await } )*
        }
        mod mysql {
            $( #[tokio::test] async fn $case() { super::harness::run(super::Backend::MySql, super::cases::$case).await } )*
        }
    };
}

conformance!(
    first_open_creates_default_cluster_and_reopen_is_idempotent,
    concurrent_first_opens_agree,
    cluster_crud,
    duplicate_cluster_name_is_conflict,
    invalid_cluster_input_is_rejected,
    default_cluster_moves_and_stays_unique,
    member_registered_twice_is_one_row,
    keepalive_refreshes_and_reactivates,
    inactive_members_are_not_listed_as_active,
    gc_removes_only_old_inactive_members,
    users_crud_and_root_user,
    tokens_create_find_delete,
    failed_multi_step_writes_leave_nothing_behind,
    signed_out_sessions_are_remembered_until_expiry,
    settings_are_written_once,
    members_filter_and_only_inactive_ones_delete,
    the_last_root_stays,
);

fn cluster(name: &str) -> NewCluster {
    NewCluster { name: name.into(), ..NewCluster::default() }
}

fn registration(kind: MemberKind, cluster_id: i64, hostname: &str, ip: &str) -> Registration {
    Registration {
        kind,
        cluster_id,
        hostname: hostname.into(),
        ip: ip.parse::<IpAddr>().unwrap(),
        port: 8002,
        download_port: (kind == MemberKind::SeedPeer).then_some(4100),
        idc: "idc-1".into(),
        location: "cn|zj|hz".into(),
    }
}

async fn default_count(store: &Store) -> usize {
    store.list_clusters().await.unwrap().iter().filter(|c| c.is_default).count()
}

mod cases {
    use super::*;

    pub async fn first_open_creates_default_cluster_and_reopen_is_idempotent(url: String) {
        let store = Store::open(&url).await.unwrap();
        let default = store.default_cluster().await.unwrap();
        assert_eq!(default.name, "default");
        assert!(default.is_default);
        assert_eq!(default.config, ClusterConfig::default());
        assert_eq!(default.config.candidate_parent_limit, 4);
        assert_eq!(default.scopes, Scopes::default());
        assert_eq!(store.list_clusters().await.unwrap().len(), 1);
        assert_eq!(store.schema_versions().await.unwrap(), vec![1, 2, 3, 4]);
        assert!(store.list_users().await.unwrap().is_empty(), "no root user before ensure_root_user");
        store.close().await;

        let store = Store::open(&url).await.unwrap();
        let clusters = store.list_clusters().await.unwrap();
        assert_eq!(clusters, vec![default]);
        assert_eq!(store.schema_versions().await.unwrap(), vec![1, 2, 3, 4]);
        store.close().await;
    }

    pub async fn concurrent_first_opens_agree(url: String) {
        let (a, b, c) = tokio::join!(Store::open(&url), Store::open(&url), Store::open(&url));
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a.list_clusters().await.unwrap().len(), 1);
        assert_eq!(default_count(&b).await, 1);
        assert_eq!(c.schema_versions().await.unwrap(), vec![1, 2, 3, 4]);
        for s in [a, b, c] {
            s.close().await;
        }
    }

    pub async fn cluster_crud(url: String) {
        let store = Store::open(&url).await.unwrap();
        let new = NewCluster {
            name: "east".into(),
            description: "east region".into(),
            config: ClusterConfig { candidate_parent_limit: 8, back_to_source_limit: 2, load_limit: 64 },
            scopes: Scopes {
                idc: "idc-1|idc-2".into(),
                location: "cn|zj".into(),
                cidrs: vec!["10.0.0.0/8".into(), "fd00::/64".into()],
                hostnames: vec!["^east-.*$".into()],
            },
            is_default: false,
        };
        let created = store.create_cluster(&new).await.unwrap();
        assert_eq!((created.name.as_str(), &created.config, &created.scopes), ("east", &new.config, &new.scopes));
        assert!(!created.is_default);
        assert_eq!(store.get_cluster(created.id).await.unwrap(), created);
        assert_eq!(store.get_cluster_by_name("east").await.unwrap(), created);
        assert_eq!(store.list_clusters().await.unwrap().len(), 2);

        let changed = NewCluster {
            name: "east-2".into(),
            description: "renamed".into(),
            scopes: Scopes { cidrs: vec!["192.168.0.0/16".into()], ..Scopes::default() },
            ..new.clone()
        };
        let updated = store.update_cluster(created.id, &changed).await.unwrap();
        assert_eq!(updated.id, created.id);
        assert_eq!((updated.name.as_str(), updated.description.as_str()), ("east-2", "renamed"));
        assert_eq!(updated.scopes.cidrs, vec!["192.168.0.0/16".to_string()]);
        assert_eq!(updated.created_at, created.created_at);
        assert!(updated.updated_at >= created.updated_at);
        assert_eq!(store.get_cluster(created.id).await.unwrap(), updated);
        assert_eq!(store.get_cluster_by_name("east").await.unwrap_err(), StoreError::NotFound);

        store.delete_cluster(created.id).await.unwrap();
        assert_eq!(store.get_cluster(created.id).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.delete_cluster(created.id).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.update_cluster(created.id, &changed).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.list_clusters().await.unwrap().len(), 1);
        store.close().await;
    }

    pub async fn duplicate_cluster_name_is_conflict(url: String) {
        let store = Store::open(&url).await.unwrap();
        store.create_cluster(&cluster("a")).await.unwrap();
        let b = store.create_cluster(&cluster("b")).await.unwrap();
        assert_eq!(store.create_cluster(&cluster("a")).await.unwrap_err(), StoreError::Conflict("name"));
        assert_eq!(store.create_cluster(&cluster("default")).await.unwrap_err(), StoreError::Conflict("name"));
        assert_eq!(store.update_cluster(b.id, &cluster("a")).await.unwrap_err(), StoreError::Conflict("name"));
        assert_eq!(store.get_cluster(b.id).await.unwrap(), b);
        assert_eq!(store.list_clusters().await.unwrap().len(), 3);
        store.close().await;
    }

    pub async fn invalid_cluster_input_is_rejected(url: String) {
        let store = Store::open(&url).await.unwrap();
        assert!(matches!(store.create_cluster(&cluster("")).await, Err(StoreError::Invalid("name", _))));
        assert!(matches!(store.create_cluster(&cluster(&"x".repeat(256))).await, Err(StoreError::Invalid("name", _))));
        let bad_cidr =
            NewCluster { scopes: Scopes { cidrs: vec!["10.0.0.0/40".into()], ..Scopes::default() }, ..cluster("c") };
        assert!(matches!(store.create_cluster(&bad_cidr).await, Err(StoreError::Invalid("scopes.cidrs", _))));
        assert_eq!(store.list_clusters().await.unwrap().len(), 1);
        store.close().await;
    }

    pub async fn default_cluster_moves_and_stays_unique(url: String) {
        let store = Store::open(&url).await.unwrap();
        let first = store.default_cluster().await.unwrap();
        let b = store.create_cluster(&NewCluster { is_default: true, ..cluster("b") }).await.unwrap();
        assert!(b.is_default);
        assert_eq!(store.default_cluster().await.unwrap().id, b.id);
        assert!(!store.get_cluster(first.id).await.unwrap().is_default);
        assert_eq!(default_count(&store).await, 1);

        // The default cannot be un-defaulted or deleted; it can only move.
        assert!(matches!(store.update_cluster(b.id, &cluster("b")).await, Err(StoreError::Invalid("is_default", _))));
        assert!(matches!(store.delete_cluster(b.id).await, Err(StoreError::Invalid("is_default", _))));
        let back =
            store.update_cluster(first.id, &NewCluster { is_default: true, ..cluster("default") }).await.unwrap();
        assert!(back.is_default);
        assert!(!store.get_cluster(b.id).await.unwrap().is_default);
        assert_eq!(default_count(&store).await, 1);
        store.delete_cluster(b.id).await.unwrap();

        // Reopening does not add a second default.
        store.close().await;
        let store = Store::open(&url).await.unwrap();
        assert_eq!(default_count(&store).await, 1);
        assert_eq!(store.default_cluster().await.unwrap().id, first.id);
        store.close().await;
    }

    pub async fn member_registered_twice_is_one_row(url: String) {
        let store = Store::open(&url).await.unwrap();
        let cid = store.default_cluster().await.unwrap().id;
        for kind in [MemberKind::Scheduler, MemberKind::SeedPeer] {
            let reg = registration(kind, cid, "host-a", "10.0.0.1");
            let first = store.register_member(&reg, Timestamp(1_000)).await.unwrap();
            assert_eq!(first.kind, kind);
            assert_eq!((first.state, first.last_keepalive_at), (MemberState::Active, Timestamp(1_000)));
            assert_eq!(first.download_port, (kind == MemberKind::SeedPeer).then_some(4100));
            assert_eq!(first.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
            store.mark_inactive(kind, first.id, Timestamp(1_500)).await.unwrap();

            let again = Registration { port: 9002, idc: "idc-2".into(), ..reg.clone() };
            let second = store.register_member(&again, Timestamp(2_000)).await.unwrap();
            assert_eq!(second.id, first.id, "same hostname+ip+cluster is the same member");
            assert_eq!((second.port, second.idc.as_str()), (9002, "idc-2"));
            assert_eq!((second.state, second.last_keepalive_at), (MemberState::Active, Timestamp(2_000)));
            assert_eq!(second.created_at, first.created_at);
            assert_eq!(store.list_members(kind, cid).await.unwrap(), vec![second.clone()]);

            // Another IP is another member.
            let other = store.register_member(&registration(kind, cid, "host-a", "fd00::2"), Timestamp(2_000)).await;
            assert_ne!(other.unwrap().id, first.id);
            assert_eq!(store.list_members(kind, cid).await.unwrap().len(), 2);

            let unknown = registration(kind, 999_999, "host-a", "10.0.0.1");
            assert_eq!(store.register_member(&unknown, Timestamp(3_000)).await.unwrap_err(), StoreError::NotFound);
        }
        let no_download_port =
            Registration { download_port: None, ..registration(MemberKind::SeedPeer, cid, "s", "10.1.1.1") };
        assert!(matches!(
            store.register_member(&no_download_port, Timestamp(1)).await,
            Err(StoreError::Invalid("download_port", _))
        ));
        store.close().await;
    }

    pub async fn keepalive_refreshes_and_reactivates(url: String) {
        let store = Store::open(&url).await.unwrap();
        let cid = store.default_cluster().await.unwrap().id;
        let kind = MemberKind::Scheduler;
        let m = store.register_member(&registration(kind, cid, "h", "10.0.0.1"), Timestamp(1_000)).await.unwrap();
        assert!(!store.keepalive(kind, m.id, Timestamp(5_000)).await.unwrap(), "already active");
        // The same instant twice still finds the row (MySQL reports matched, not changed, rows).
        assert!(!store.keepalive(kind, m.id, Timestamp(5_000)).await.unwrap());
        assert_eq!(store.get_member(kind, m.id).await.unwrap().last_keepalive_at, Timestamp(5_000));

        store.mark_inactive(kind, m.id, Timestamp(6_000)).await.unwrap();
        let inactive = store.get_member(kind, m.id).await.unwrap();
        assert_eq!((inactive.state, inactive.last_keepalive_at), (MemberState::Inactive, Timestamp(5_000)));
        assert!(store.keepalive(kind, m.id, Timestamp(7_000)).await.unwrap(), "reactivated");
        assert_eq!(store.get_member(kind, m.id).await.unwrap().state, MemberState::Active);

        assert_eq!(store.keepalive(kind, 999_999, Timestamp(1)).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.mark_inactive(kind, 999_999, Timestamp(1)).await.unwrap_err(), StoreError::NotFound);
        // IDs are per kind: a scheduler's ID is not a seed peer's.
        assert_eq!(store.get_member(MemberKind::SeedPeer, m.id).await.unwrap_err(), StoreError::NotFound);
        store.close().await;
    }

    pub async fn inactive_members_are_not_listed_as_active(url: String) {
        let store = Store::open(&url).await.unwrap();
        let cid = store.default_cluster().await.unwrap().id;
        let other = store.create_cluster(&cluster("other")).await.unwrap().id;
        let kind = MemberKind::SeedPeer;
        let a = store.register_member(&registration(kind, cid, "a", "10.0.0.1"), Timestamp(1_000)).await.unwrap();
        let b = store.register_member(&registration(kind, cid, "b", "10.0.0.2"), Timestamp(1_000)).await.unwrap();
        store.register_member(&registration(kind, other, "c", "10.0.0.3"), Timestamp(1_000)).await.unwrap();

        let ids = |ms: Vec<manager::store::Member>| ms.into_iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(store.list_active_members(kind, cid).await.unwrap()), vec![a.id, b.id]);
        store.mark_inactive(kind, a.id, Timestamp(2_000)).await.unwrap();
        assert_eq!(ids(store.list_active_members(kind, cid).await.unwrap()), vec![b.id]);
        assert_eq!(ids(store.list_members(kind, cid).await.unwrap()), vec![a.id, b.id]);
        assert!(store.list_active_members(MemberKind::Scheduler, cid).await.unwrap().is_empty());

        // Missed keepalives: b last seen at 1_000 expires with a cutoff of 1_500.
        store.keepalive(kind, a.id, Timestamp(3_000)).await.unwrap();
        assert_eq!(store.expire_members(kind, Timestamp(1_500), Timestamp(3_000)).await.unwrap(), 2);
        assert_eq!(ids(store.list_active_members(kind, cid).await.unwrap()), vec![a.id]);
        assert!(store.list_active_members(kind, other).await.unwrap().is_empty());
        store.close().await;
    }

    pub async fn gc_removes_only_old_inactive_members(url: String) {
        let store = Store::open(&url).await.unwrap();
        let cid = store.default_cluster().await.unwrap().id;
        let kind = MemberKind::Scheduler;
        let old_inactive =
            store.register_member(&registration(kind, cid, "old", "10.0.0.1"), Timestamp(1_000)).await.unwrap();
        let new_inactive =
            store.register_member(&registration(kind, cid, "new", "10.0.0.2"), Timestamp(5_000)).await.unwrap();
        let old_active =
            store.register_member(&registration(kind, cid, "live", "10.0.0.3"), Timestamp(1_000)).await.unwrap();
        let seed = store
            .register_member(&registration(MemberKind::SeedPeer, cid, "old", "10.0.0.1"), Timestamp(1_000))
            .await
            .unwrap();
        store.mark_inactive(kind, old_inactive.id, Timestamp(6_000)).await.unwrap();
        store.mark_inactive(kind, new_inactive.id, Timestamp(6_000)).await.unwrap();
        store.mark_inactive(MemberKind::SeedPeer, seed.id, Timestamp(6_000)).await.unwrap();

        assert_eq!(store.gc_inactive_members(kind, Timestamp(3_000)).await.unwrap(), 1);
        let left: Vec<i64> = store.list_members(kind, cid).await.unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(left, vec![new_inactive.id, old_active.id]);
        assert_eq!(store.gc_inactive_members(kind, Timestamp(3_000)).await.unwrap(), 0);
        // GC of one kind leaves the other alone.
        assert_eq!(store.get_member(MemberKind::SeedPeer, seed.id).await.unwrap().id, seed.id);
        store.close().await;
    }

    pub async fn users_crud_and_root_user(url: String) {
        let store = Store::open(&url).await.unwrap();
        let root = store.ensure_root_user("$argon2id$hash-1").await.unwrap();
        assert_eq!((root.name.as_str(), root.role), ("root", Role::Root));
        let again = store.ensure_root_user("$argon2id$hash-2").await.unwrap();
        assert_eq!(again, root, "an existing root keeps its password");

        let guest = NewUser { name: "alice".into(), password_hash: "h".into(), role: Role::Guest };
        let alice = store.create_user(&guest).await.unwrap();
        assert_eq!((alice.name.as_str(), alice.role), ("alice", Role::Guest));
        assert_eq!(store.create_user(&guest).await.unwrap_err(), StoreError::Conflict("name"));
        assert_eq!(store.get_user(alice.id).await.unwrap(), alice);
        assert_eq!(store.get_user_by_name("alice").await.unwrap(), alice);
        assert_eq!(store.list_users().await.unwrap(), vec![root.clone(), alice.clone()]);

        // The time of the change, as the manager's clock reads it.
        let at = Timestamp(alice.sessions_valid_after.0 + 5_678);
        let promote = UserUpdate { role: Some(Role::Root), ..UserUpdate::default() };
        let promoted = store.update_user(alice.id, &promote, at).await.unwrap();
        assert_eq!((promoted.role, promoted.password_hash.as_str()), (Role::Root, "h"));
        assert_eq!(promoted.sessions_valid_after, alice.sessions_valid_after, "a role change keeps the sessions");
        let rehashed = store
            .update_user(alice.id, &UserUpdate { password_hash: Some("h2".into()), ..UserUpdate::default() }, at)
            .await
            .unwrap();
        assert_eq!((rehashed.role, rehashed.password_hash.as_str()), (Role::Root, "h2"));
        // A new password ends the sessions issued before `at`, in whole seconds.
        assert_eq!(rehashed.sessions_valid_after, Timestamp(at.0 / 1000 * 1000));
        assert_eq!(store.update_user(999_999, &UserUpdate::default(), at).await.unwrap_err(), StoreError::NotFound);

        store.delete_user(alice.id).await.unwrap();
        assert_eq!(store.get_user(alice.id).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.delete_user(alice.id).await.unwrap_err(), StoreError::NotFound);
        assert!(!format!("{root:?}").contains("hash-1"), "Debug must not print the hash");
        store.close().await;
    }

    pub async fn tokens_create_find_delete(url: String) {
        let store = Store::open(&url).await.unwrap();
        let root = store.ensure_root_user("h").await.unwrap();
        let new = NewToken {
            name: "ci".into(),
            token_hash: "sha256:aaaa".into(),
            user_id: root.id,
            expires_at: Some(Timestamp(10_000)),
        };
        let token = store.create_token(&new).await.unwrap();
        assert_eq!((token.name.as_str(), token.user_id, token.expires_at), ("ci", root.id, Some(Timestamp(10_000))));
        assert_eq!(store.find_token_by_hash("sha256:aaaa").await.unwrap(), token);
        assert!(!token.is_expired(Timestamp(9_999)));
        assert!(token.is_expired(Timestamp(10_000)));
        assert_eq!(store.create_token(&new).await.unwrap_err(), StoreError::Conflict("token_hash"));
        let forever = store
            .create_token(&NewToken { token_hash: "sha256:bbbb".into(), expires_at: None, ..new.clone() })
            .await
            .unwrap();
        assert_eq!(forever.expires_at, None);
        assert_eq!(store.list_tokens(root.id).await.unwrap(), vec![token.clone(), forever.clone()]);
        let orphan = NewToken { token_hash: "sha256:cccc".into(), user_id: 999_999, ..new.clone() };
        assert_eq!(store.create_token(&orphan).await.unwrap_err(), StoreError::NotFound);

        store.delete_token(token.id).await.unwrap();
        assert_eq!(store.find_token_by_hash("sha256:aaaa").await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.delete_token(token.id).await.unwrap_err(), StoreError::NotFound);

        // Deleting a user takes its tokens along.
        let bob = store
            .create_user(&NewUser { name: "bob".into(), password_hash: "h".into(), role: Role::Guest })
            .await
            .unwrap();
        store.create_token(&NewToken { token_hash: "sha256:dddd".into(), user_id: bob.id, ..new }).await.unwrap();
        store.delete_user(bob.id).await.unwrap();
        assert_eq!(store.find_token_by_hash("sha256:dddd").await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.find_token_by_hash("sha256:bbbb").await.unwrap(), forever);
        store.close().await;
    }

    pub async fn failed_multi_step_writes_leave_nothing_behind(url: String) {
        let store = Store::open(&url).await.unwrap();
        let default = store.default_cluster().await.unwrap();
        let other = store.create_cluster(&cluster("other")).await.unwrap();

        // Step 1 (take the default flag) succeeds, step 2 (insert) hits the
        // unique name: the flag must come back.
        let dup_default = NewCluster { is_default: true, ..cluster("other") };
        assert_eq!(store.create_cluster(&dup_default).await.unwrap_err(), StoreError::Conflict("name"));
        assert_eq!(store.default_cluster().await.unwrap(), default);
        assert_eq!(default_count(&store).await, 1);

        // Same for an update that moves the default and renames onto a taken name.
        let third = store.create_cluster(&cluster("third")).await.unwrap();
        let bad_update = NewCluster { is_default: true, ..cluster("other") };
        assert_eq!(store.update_cluster(third.id, &bad_update).await.unwrap_err(), StoreError::Conflict("name"));
        assert_eq!(store.default_cluster().await.unwrap(), default);
        assert_eq!(store.get_cluster(third.id).await.unwrap(), third);
        assert_eq!(store.get_cluster(other.id).await.unwrap(), other);

        // A cluster with members cannot be deleted, and nothing is lost trying.
        let m = store
            .register_member(&registration(MemberKind::Scheduler, other.id, "h", "10.0.0.1"), Timestamp(1))
            .await
            .unwrap();
        assert_eq!(store.delete_cluster(other.id).await.unwrap_err(), StoreError::Conflict("members"));
        assert_eq!(store.get_cluster(other.id).await.unwrap(), other);
        assert_eq!(store.get_member(MemberKind::Scheduler, m.id).await.unwrap(), m);
        assert_eq!(store.list_clusters().await.unwrap().len(), 3);
        store.close().await;
    }

    pub async fn signed_out_sessions_are_remembered_until_expiry(url: String) {
        let store = Store::open(&url).await.unwrap();
        assert!(!store.is_session_revoked("jti-1").await.unwrap());
        store.revoke_session("jti-1", Timestamp(10_000)).await.unwrap();
        store.revoke_session("jti-1", Timestamp(10_000)).await.unwrap(); // twice is fine
        store.revoke_session("jti-2", Timestamp(20_000)).await.unwrap();
        assert!(store.is_session_revoked("jti-1").await.unwrap());
        assert!(matches!(store.revoke_session("", Timestamp(1)).await, Err(StoreError::Invalid("jti", _))));
        assert_eq!(store.gc_revoked_sessions(Timestamp(9_999)).await.unwrap(), 0);
        assert_eq!(store.gc_revoked_sessions(Timestamp(10_000)).await.unwrap(), 1);
        assert!(!store.is_session_revoked("jti-1").await.unwrap());
        assert!(store.is_session_revoked("jti-2").await.unwrap());
        store.close().await;
    }

    pub async fn settings_are_written_once(url: String) {
        let (a, b) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
        // Two replicas racing to initialise agree on one value.
        let (x, y) = tokio::join!(a.setting_or_init("key", "from-a"), b.setting_or_init("key", "from-b"));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(x, y);
        assert_eq!(a.setting_or_init("key", "later").await.unwrap(), x);
        // Replaced on purpose, every replica reads the new value.
        a.replace_setting("key", "rotated").await.unwrap();
        assert_eq!(b.setting_or_init("key", "later").await.unwrap(), "rotated");
        a.close().await;
        b.close().await;
    }

    pub async fn members_filter_and_only_inactive_ones_delete(url: String) {
        let store = Store::open(&url).await.unwrap();
        let c1 = store.default_cluster().await.unwrap().id;
        let c2 = store.create_cluster(&cluster("other")).await.unwrap().id;
        let kind = MemberKind::Scheduler;
        let a = store.register_member(&registration(kind, c1, "a", "10.0.0.1"), Timestamp(1_000)).await.unwrap();
        let b = store.register_member(&registration(kind, c2, "b", "10.0.0.2"), Timestamp(1_000)).await.unwrap();
        store.mark_inactive(kind, b.id, Timestamp(2_000)).await.unwrap();
        let ids = |ms: Vec<manager::store::Member>| ms.iter().map(|m| m.id).collect::<Vec<_>>();
        assert_eq!(ids(store.find_members(kind, None, None).await.unwrap()), vec![a.id, b.id]);
        assert_eq!(ids(store.find_members(kind, Some(c2), None).await.unwrap()), vec![b.id]);
        assert_eq!(ids(store.find_members(kind, None, Some(MemberState::Active)).await.unwrap()), vec![a.id]);
        assert!(store.find_members(kind, Some(c2), Some(MemberState::Active)).await.unwrap().is_empty());
        assert!(store.find_members(MemberKind::SeedPeer, None, None).await.unwrap().is_empty());
        assert_eq!(store.clusters_with_active_schedulers().await.unwrap(), [c1].into_iter().collect());

        assert_eq!(store.delete_inactive_member(kind, a.id).await.unwrap_err(), StoreError::Conflict("state"));
        store.delete_inactive_member(kind, b.id).await.unwrap();
        assert_eq!(store.get_member(kind, b.id).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.delete_inactive_member(kind, b.id).await.unwrap_err(), StoreError::NotFound);
        assert_eq!(store.get_member(kind, a.id).await.unwrap().state, MemberState::Active);
        store.close().await;
    }

    pub async fn the_last_root_stays(url: String) {
        let store = Store::open(&url).await.unwrap();
        let root = store.ensure_root_user("$argon2id$root").await.unwrap();
        let demote = UserUpdate { role: Some(Role::Guest), ..UserUpdate::default() };
        assert_eq!(store.delete_user(root.id).await.unwrap_err(), StoreError::Conflict("role"));
        assert_eq!(
            store.update_user(root.id, &demote, Timestamp::now()).await.unwrap_err(),
            StoreError::Conflict("role")
        );
        assert_eq!(store.get_user(root.id).await.unwrap().role, Role::Root, "nothing changed");
        let other = NewUser { name: "admin".into(), password_hash: "$argon2id$x".into(), role: Role::Root };
        let other = store.create_user(&other).await.unwrap();
        assert_eq!(store.update_user(root.id, &demote, Timestamp::now()).await.unwrap().role, Role::Guest);
        assert_eq!(store.delete_user(other.id).await.unwrap_err(), StoreError::Conflict("role"));
        store.delete_user(root.id).await.unwrap();
        store.close().await;
    }
}
