//! Face templates in the store, on SQLite and on PostgreSQL: sealed before they are stored,
//! read back only within their tenant, capped per user, and gone with their user.

mod common;

use base64::Engine as _;
use face_service::matching::Template;
use face_service::store::clients::ClientRow;
use face_service::store::templates::TemplateRow;
use face_service::store::users::UserRow;
use face_service::store::{Store, StoreError};
use face_service::tenants::sealing::{MasterKey, Sealer};

use common::store_on;

async fn client_with_users(store: &Store, client: &str, users: &[&str]) {
    let now = face_service::store::now();
    store
        .insert_client(&ClientRow {
            id: client.into(),
            name: client.into(),
            tier: "basic".into(),
            status: "active".into(),
            api_key_hash: format!("hash-{client}"),
            api_secret_sealed: "sealed".into(),
            result_key_sealed: None,
            per_hour: 100,
            per_day: 1000,
            created_at: now,
            credentials_rotated_at: now,
        })
        .await
        .unwrap();
    for user in users {
        store
            .insert_user(&UserRow {
                client_id: client.into(),
                external_user_id: (*user).into(),
                id: format!("{client}-{user}"),
                profile: "{}".into(),
                metadata: "{}".into(),
                is_active: 1,
                face_auth_enabled: 1,
                is_enrolled: 0,
                enrollment_completed_at: None,
                last_recognition_at: None,
                created_at: now,
                updated_at: now,
            })
            .await
            .unwrap();
    }
}

/// A template pointing along axis `axis`.
fn template(axis: usize) -> Template {
    let mut values = [0.01f32; 128];
    values[axis] = 1.0;
    Template::from_embedding(&values).unwrap()
}

fn row(client: &str, user: &str, id: &str, sealed: String, at: i64) -> TemplateRow {
    TemplateRow {
        client_id: client.into(),
        external_user_id: user.into(),
        id: id.into(),
        source: "live".into(),
        template_sealed: sealed,
        created_at: at,
        for_matching: 1,
    }
}

async fn templates_are_sealed_scoped_capped_and_deleted_with_their_user(engine: &str) {
    let (store, _cluster, _dir) = store_on(engine).await;
    client_with_users(&store, "client-a", &["alice", "bob"]).await;
    client_with_users(&store, "client-b", &["alice"]).await;
    let sealer = Sealer::new(&MasterKey::random());
    let seal = |t: &Template| sealer.seal(&t.to_bytes());

    store
        .insert_template(&row("client-a", "alice", "t1", seal(&template(1)), 10), 3)
        .await
        .unwrap();
    store
        .insert_template(&row("client-a", "bob", "t2", seal(&template(2)), 11), 3)
        .await
        .unwrap();
    store
        .insert_template(&row("client-b", "alice", "t1", seal(&template(3)), 12), 3)
        .await
        .unwrap();

    // What is stored is sealed: no run of the template's bytes is in it, and it opens only
    // with its key, to the same template.
    let stored = store.user_templates("client-a", "alice").await.unwrap();
    assert_eq!(stored.len(), 1);
    let plain = template(1).to_bytes();
    let at_rest = base64::engine::general_purpose::STANDARD
        .decode(&stored[0].template_sealed)
        .unwrap();
    assert!(
        at_rest.windows(16).all(|w| w != &plain[..16]),
        "no run of it in clear"
    );
    let opened = sealer.open(&stored[0].template_sealed).unwrap();
    assert_eq!(opened, plain);
    assert!(
        Sealer::new(&MasterKey::random())
            .open(&stored[0].template_sealed)
            .is_err()
    );

    // Each tenant sees its own: the same external id under another client is another user.
    let gallery_a = store.client_templates("client-a").await.unwrap();
    let ids: Vec<(&str, &str)> = gallery_a
        .iter()
        .map(|t| (t.external_user_id.as_str(), t.id.as_str()))
        .collect();
    assert_eq!(ids, [("alice", "t1"), ("bob", "t2")]);
    let gallery_b = store.client_templates("client-b").await.unwrap();
    assert_eq!(gallery_b.len(), 1);
    let theirs = Template::from_bytes(&sealer.open(&gallery_b[0].template_sealed).unwrap());
    assert!(theirs.unwrap().similarity(&template(3)) > 0.999);

    // The same id twice is a conflict; a template of a user who does not exist is refused.
    let again = store
        .insert_template(&row("client-a", "bob", "t2", seal(&template(2)), 13), 3)
        .await;
    assert!(matches!(again, Err(StoreError::Conflict)), "{again:?}");
    let nobody = store
        .insert_template(&row("client-a", "carol", "t9", seal(&template(9)), 13), 3)
        .await;
    assert!(nobody.is_err(), "a template needs its user");

    // A user keeps its newest `keep`.
    for (id, at) in [("t3", 20), ("t4", 21), ("t5", 22)] {
        store
            .insert_template(&row("client-a", "alice", id, seal(&template(4)), at), 3)
            .await
            .unwrap();
    }
    let kept: Vec<String> = store
        .user_templates("client-a", "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(kept, ["t3", "t4", "t5"]);

    // Deleting a user takes its templates, and only its own.
    assert!(store.delete_user("client-a", "alice").await.unwrap());
    assert!(
        store
            .user_templates("client-a", "alice")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.client_templates("client-a").await.unwrap().len(), 1);
    assert_eq!(store.client_templates("client-b").await.unwrap().len(), 1);
    assert_eq!(
        store
            .delete_user_templates("client-a", "bob")
            .await
            .unwrap(),
        1
    );
    assert!(store.client_templates("client-a").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_templates_are_sealed_scoped_capped_and_deleted_with_their_user() {
    templates_are_sealed_scoped_capped_and_deleted_with_their_user("sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_templates_are_sealed_scoped_capped_and_deleted_with_their_user() {
    templates_are_sealed_scoped_capped_and_deleted_with_their_user("postgres").await;
}
