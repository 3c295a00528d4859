//! The seed's REST API end to end, on both store engines: every test here runs once on
//! SQLite in a temporary directory and once on a fresh database in a throwaway PostgreSQL
//! cluster, against a real server on a real socket, with a real HTTP client.

mod common;

use std::time::Duration;

use face_service::store::PageRequest;
use face_service::tenants::NewClient;
use face_service::tenants::tiers::Tier;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::client::{astronaut_jpeg, close_code, frame_message, next_json, send};
use common::rest::{Api, Auth, Backing, Engine, config, on_both_engines};

on_both_engines!(
    credentials_open_the_api_and_every_refusal_is_audited,
    users_are_kept_per_client_with_pages,
    bad_input_is_refused_and_changes_nothing,
    one_client_cannot_reach_anothers_data,
    issued_sessions_open_the_socket_once_and_keep_their_outcome,
    concurrent_session_creations_all_succeed,
    data_survives_a_restart,
    rate_limits_answer_429_with_retry_after,
);

async fn credentials_open_the_api_and_every_refusal_is_audited(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("Tenant A").await;
    let b = api.client("Tenant B").await;

    let (status, issued) = api
        .post(
            "/api/core/auth/client/",
            Auth::None,
            json!({ "api_key": a.api_key, "api_secret": a.api_secret }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(issued["client_id"], a.client_id.as_str());
    assert_eq!(issued["client_name"], "Tenant A");
    assert_eq!(issued["token_type"], "JWT");
    assert_eq!(issued["rate_limits"]["per_hour"], 1000);
    let token = issued["access_token"].as_str().unwrap();
    let (status, _) = api
        .post(
            "/api/core/auth/client/",
            Auth::None,
            json!({ "api_key": a.api_key, "api_secret": b.api_secret }),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The seed's three forms, and a JWT after Bearer.
    for auth in [
        Auth::Key(&a.api_key),
        Auth::BearerKey(&a.api_key),
        Auth::Jwt(token),
        Auth::BearerJwt(token),
    ] {
        let (status, page) = api.get("/api/clients/users/", auth).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["count"], 0);
    }

    let now = chrono::Utc::now().timestamp();
    let sign = |claims: Value, secret: &str| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let claims = |exp: i64| json!({ "client_id": a.client_id, "tier": "basic", "iat": now - 7200, "exp": exp });
    let expired = sign(claims(now - 3600), &a.api_secret);
    let other_secret = sign(claims(now + 3600), &b.api_secret);
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |value: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({ "alg": "none", "typ": "JWT" })),
        parts[1]
    );
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(
            json!({ "client_id": a.client_id, "tier": "enterprise", "iat": now, "exp": now + 3600 })
        ),
        parts[2]
    );
    let refusals = [
        (Auth::None, "Authentication credentials were not provided."),
        (Auth::Key("frapi_not-a-key"), "Invalid API key"),
        (Auth::Jwt(&expired), "JWT token expired"),
        (Auth::Jwt(&other_secret), "Invalid JWT token"),
        (Auth::Jwt(&unsigned), "Invalid JWT token"),
        (Auth::BearerJwt(&tampered), "Invalid JWT token"),
    ];
    for (auth, detail) in refusals.clone() {
        let (status, answer) = api.get("/api/clients/users/", auth).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(answer["detail"], detail);
    }

    // A suspended client's key and JWT stop working.
    assert!(
        api.server
            .tenants
            .set_status(&b.client_id, "suspended")
            .await
            .unwrap()
    );
    let (status, answer) = api.get("/api/clients/users/", Auth::Key(&b.api_key)).await;
    assert_eq!(
        (status, answer["detail"].as_str()),
        (StatusCode::FORBIDDEN, Some("Client account is not active"))
    );

    // Refusals that named client A are in A's log; those that named none are kept apart.
    let (status, log) = api
        .get("/api/core/audit-logs/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(status, StatusCode::OK);
    let events: Vec<(String, bool)> = log["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["success"].as_bool().unwrap(),
            )
        })
        .collect();
    let failures = events
        .iter()
        .filter(|(e, ok)| e == "authentication" && !ok)
        .count();
    assert_eq!(failures, 4, "{events:?}");
    assert!(events.contains(&("token_issued".into(), true)));
    assert!(events.contains(&("token_issued".into(), false)));
    let anonymous = api
        .server
        .tenants
        .store()
        .audit_log(
            "",
            PageRequest {
                offset: 0,
                size: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(anonymous.total, 2);

    // Rotation: the old key stops working, the new one works.
    let path = format!("/api/clients/clients/{}/reset_credentials/", a.client_id);
    let (status, rotated) = api.post(&path, Auth::Key(&a.api_key), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let new_key = rotated["api_key"].as_str().unwrap();
    assert_ne!(new_key, a.api_key);
    assert_eq!(
        api.get("/api/clients/users/", Auth::Key(&a.api_key))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.get("/api/clients/users/", Auth::Key(new_key)).await.0,
        StatusCode::OK
    );
    api.stop().await;
}

async fn users_are_kept_per_client_with_pages(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    let key = Auth::Key(&a.api_key);

    let (status, user) = api
        .post(
            "/api/clients/users/",
            key.clone(),
            json!({ "external_user_id": "user-1", "profile": { "full_name": "Ada L" }, "metadata": { "plan": "x" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(user["display_name"], "Ada L");
    assert_eq!(user["is_enrolled"], false);
    assert_eq!(user["face_auth_enabled"], true);
    let (status, duplicate) = api
        .post(
            "/api/clients/users/",
            key.clone(),
            json!({ "external_user_id": "user-1" }),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{duplicate}");

    // Letters of any script round-trip.
    api.user(&a.api_key, "josé.ñúñez@例え").await;
    let (status, unicode) = api
        .get(
            "/api/clients/users/jos%C3%A9.%C3%B1%C3%BA%C3%B1ez@%E4%BE%8B%E3%81%88/",
            key.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unicode["external_user_id"], "josé.ñúñez@例え");

    for i in 0..23 {
        api.user(&a.api_key, &format!("bulk-{i:02}")).await;
    }
    let (_, first) = api.get("/api/clients/users/", key.clone()).await;
    assert_eq!(first["count"], 25);
    assert_eq!(first["results"].as_array().unwrap().len(), 20);
    assert!(first["previous"].is_null());
    let next = first["next"].as_str().unwrap();
    assert!(next.ends_with("/api/clients/users/?page=2"), "{next}");
    let (_, second) = api.get("/api/clients/users/?page=2", key.clone()).await;
    assert_eq!(second["results"].as_array().unwrap().len(), 5);
    assert!(second["next"].is_null());
    assert_eq!(
        api.get("/api/clients/users/?page=3", key.clone()).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, patched) = api
        .call(
            Method::PATCH,
            "/api/clients/users/user-1/",
            key.clone(),
            Some(json!({ "face_auth_enabled": false })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["face_auth_enabled"], false);
    assert_eq!(patched["profile"]["full_name"], "Ada L");
    let (_, replaced) = api
        .call(
            Method::PUT,
            "/api/clients/users/user-1/",
            key.clone(),
            Some(json!({ "profile": { "name": "A" } })),
        )
        .await;
    assert_eq!(replaced["metadata"], json!({}));
    assert_eq!(replaced["display_name"], "A");
    assert_eq!(replaced["face_auth_enabled"], true);

    let (_, deactivated) = api
        .post(
            "/api/clients/users/user-1/deactivate/",
            key.clone(),
            json!({}),
        )
        .await;
    assert_eq!(deactivated["user"]["is_active"], false);
    let (status, refused) = api
        .post(
            "/api/auth/enrollment/",
            key.clone(),
            json!({ "user_id": "user-1", "session_type": "webcam" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (_, activated) = api
        .post(
            "/api/clients/users/user-1/activate/",
            key.clone(),
            json!({}),
        )
        .await;
    assert_eq!(activated["user"]["is_active"], true);

    let session = api.enrollment(&a.api_key, "user-1").await;
    let (_, enrollments) = api
        .get("/api/clients/users/user-1/enrollments/", key.clone())
        .await;
    assert_eq!(enrollments["count"], 1);
    assert_eq!(
        enrollments["enrollments"][0]["id"],
        session["enrollment_id"]
    );
    assert_eq!(enrollments["enrollments"][0]["status"], "pending");

    // Deleting a user takes its enrollments and sessions with it.
    let token = session["session_token"].as_str().unwrap();
    let (status, _) = api
        .call(
            Method::DELETE,
            "/api/clients/users/user-1/",
            key.clone(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get("/api/clients/users/user-1/", key.clone()).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get(&format!("/api/auth/sessions/{token}/"), key.clone())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = api
        .call(
            Method::DELETE,
            "/api/clients/users/user-1/",
            key.clone(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    api.stop().await;
}

async fn bad_input_is_refused_and_changes_nothing(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    let key = Auth::Key(&a.api_key);
    api.user(&a.api_key, "kept").await;

    let huge = json!({ "external_user_id": "big", "metadata": { "blob": "x".repeat(1 << 20) } });
    let (status, answer) = api.post("/api/clients/users/", key.clone(), huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(answer["detail"].is_string());
    for (body, what) in [
        (json!({ "external_user_id": 42 }), "a number for an id"),
        (
            json!({ "external_user_id": "x", "profile": "not an object" }),
            "a string for the profile",
        ),
        (
            json!({ "external_user_id": "x'; DROP TABLE users; --" }),
            "SQL in the id",
        ),
        (json!({ "external_user_id": "a/b" }), "a slash in the id"),
        (json!({ "external_user_id": "" }), "an empty id"),
        (json!({ "external_user_id": "x".repeat(256) }), "a long id"),
        (json!({ "profile": {} }), "no id"),
    ] {
        let (status, answer) = api.post("/api/clients/users/", key.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        assert!(
            answer["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{what}"
        );
    }
    let status = api
        .request(Method::POST, "/api/clients/users/", key.clone())
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for (body, what) in [
        (
            json!({ "user_id": "kept", "session_type": "fax" }),
            "an unknown session type",
        ),
        (
            json!({ "user_id": "kept", "metadata": { "target_samples": 0 } }),
            "no samples",
        ),
        (json!({ "user_id": "nobody" }), "an unknown user"),
    ] {
        let (status, answer) = api.post("/api/auth/enrollment/", key.clone(), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
    }
    let (status, answer) = api
        .post(
            "/api/auth/authentication/",
            key.clone(),
            json!({ "user_id": "nobody", "session_type": "api" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // JSON everywhere, even for paths and methods that do not exist.
    let (status, answer) = api.get("/api/no-such-thing/", key.clone()).await;
    assert_eq!(
        (status, answer["detail"].is_string()),
        (StatusCode::NOT_FOUND, true)
    );
    let (status, answer) = api
        .call(Method::DELETE, "/api/auth/sessions/", key.clone(), None)
        .await;
    assert_eq!(
        (status, answer["detail"].is_string()),
        (StatusCode::METHOD_NOT_ALLOWED, true)
    );

    let (_, users) = api.get("/api/clients/users/", key.clone()).await;
    assert_eq!(users["count"], 1);
    let (_, sessions) = api.get("/api/auth/sessions/", key).await;
    assert_eq!(sessions["count"], 0);
    api.stop().await;
}

async fn one_client_cannot_reach_anothers_data(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    let b = api.client("B").await;
    api.user(&a.api_key, "alice").await;
    let session = api.enrollment(&a.api_key, "alice").await;
    let token = session["session_token"].as_str().unwrap();
    let b_key = Auth::Key(&b.api_key);

    let (_, listed) = api.get("/api/clients/users/", b_key.clone()).await;
    assert_eq!(listed["count"], 0);
    for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
        let body = (method != Method::GET && method != Method::DELETE)
            .then(|| json!({ "metadata": { "x": 1 } }));
        let (status, _) = api
            .call(
                method.clone(),
                "/api/clients/users/alice/",
                b_key.clone(),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}");
    }
    for path in ["activate", "deactivate"] {
        let (status, _) = api
            .post(
                &format!("/api/clients/users/alice/{path}/"),
                b_key.clone(),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        api.get("/api/clients/users/alice/enrollments/", b_key.clone())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = api
        .post(
            "/api/auth/enrollment/",
            b_key.clone(),
            json!({ "user_id": "alice", "session_type": "webcam" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api
        .post(
            "/api/auth/authentication/",
            b_key.clone(),
            json!({ "user_id": "alice", "session_type": "webcam" }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, sessions) = api.get("/api/auth/sessions/", b_key.clone()).await;
    assert_eq!(sessions["count"], 0);
    let (status, _) = api
        .get(
            &format!("/api/auth/sessions/{token}/status/"),
            b_key.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let id = api.session_status(&a.api_key, token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api.get(&format!("/api/auth/sessions/{id}/"), b_key.clone())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let path = format!("/api/clients/clients/{}/reset_credentials/", a.client_id);
    assert_eq!(
        api.post(&path, b_key.clone(), json!({})).await.0,
        StatusCode::NOT_FOUND
    );

    // Client A's data is as it was, and its key still works.
    let (_, alice) = api
        .get("/api/clients/users/alice/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(alice["metadata"], json!({}));
    assert_eq!(alice["is_active"], true);
    api.stop().await;
}

async fn issued_sessions_open_the_socket_once_and_keep_their_outcome(engine: Engine) {
    let backing = Backing::new(engine).await;
    let mut serve = config(&backing);
    serve.liveness.authentication_timeout_secs = 2;
    let api = Api::start(serve).await;
    let a = api.client("A").await;
    api.user(&a.api_key, "alice").await;

    let session = api.enrollment(&a.api_key, "alice").await;
    assert_eq!(session["status"], "pending");
    assert_eq!(session["target_samples"], 5);
    let token = session["session_token"].as_str().unwrap();
    assert!(token.starts_with("sess_") && token.len() == 48, "{token}");
    let host = api.server.address.to_string();
    assert_eq!(
        session["websocket_url"],
        format!("ws://{host}/ws/auth/process-image/{token}/")
    );

    // An enrollment session: its kind comes from the store; one frame, then the client leaves.
    let mut socket = api.websocket(token).await;
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["type"], "connection_established");
    assert_eq!(hello["session_type"], "enrollment");
    send(&mut socket, frame_message(&astronaut_jpeg(), 1)).await;
    assert_eq!(next_json(&mut socket).await["type"], "frame_processed");
    socket.close(None).await.unwrap();
    drop(socket);
    let outcome = api.ended_session(&a.api_key, token).await;
    assert_eq!(outcome["status"], "disconnected", "{outcome}");
    assert_eq!(outcome["result"]["frames_processed"], 1);
    assert_eq!(outcome["enrollment_status"], "pending");
    assert!(outcome["completed_at"].is_string());

    // Single use.
    let mut again = api.websocket(token).await;
    assert_eq!(close_code(&mut again).await, Some(4401));
    let mut unknown = api.websocket("sess_never-issued").await;
    assert_eq!(close_code(&mut unknown).await, Some(4404));
    let mut open_style = api.websocket("test_1").await;
    assert_eq!(close_code(&mut open_style).await, Some(4404));

    // An authentication session that shows no liveness in time: `timeout`.
    let (status, created) = api
        .request(Method::POST, "/api/auth/authentication/", Auth::Key(&a.api_key))
        .json(&json!({ "user_id": "alice", "session_type": "mobile", "metadata": { "required_blinks": 3 } }))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["status"], "active");
    assert_eq!(created["session_type"], "mobile");
    let token = created["session_token"].as_str().unwrap();
    assert!(
        created["websocket_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("ws://{}/", api.server.address))
    );
    let mut socket = api.websocket(token).await;
    let hello = next_json(&mut socket).await;
    assert_eq!(hello["session_type"], "authentication");
    assert_eq!(hello["blinks_required"], 3);
    assert_eq!(
        next_json(&mut socket).await["type"],
        "authentication_timeout"
    );
    close_code(&mut socket).await;
    let outcome = api.ended_session(&a.api_key, token).await;
    assert_eq!(outcome["status"], "timeout", "{outcome}");
    assert_eq!(outcome["result"]["liveness_verified"], false);
    api.stop().await;

    // A session nobody opened in time is expired, on the socket and over REST.
    let mut serve = config(&backing);
    serve.access.session_lifetime_secs = 1;
    let api = Api::start(serve).await;
    let a_key = a.api_key.clone();
    let session = api.enrollment(&a_key, "alice").await;
    let token = session["session_token"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.session_status(&a_key, token).await["status"], "expired");
    let mut late = api.websocket(token).await;
    assert_eq!(close_code(&mut late).await, Some(4401));
    let (_, status) = api
        .get(
            &format!("/api/auth/sessions/{token}/status/"),
            Auth::Key(&a_key),
        )
        .await;
    assert_eq!(status["status"], "expired");
    api.stop().await;
}

async fn concurrent_session_creations_all_succeed(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    api.user(&a.api_key, "alice").await;
    let creations = (0..100).map(|i| {
        let (api, key) = (&api, &a.api_key);
        async move {
            let path = if i % 2 == 0 {
                "/api/auth/enrollment/"
            } else {
                "/api/auth/authentication/"
            };
            let (status, answer) = api
                .post(
                    path,
                    Auth::Key(key),
                    json!({ "user_id": "alice", "session_type": "webcam" }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
            answer["session_token"].as_str().unwrap().to_owned()
        }
    });
    let mut tokens = futures_util::future::join_all(creations).await;
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 100);
    let (_, sessions) = api.get("/api/auth/sessions/", Auth::Key(&a.api_key)).await;
    assert_eq!(sessions["count"], 100);
    api.stop().await;
}

async fn data_survives_a_restart(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let a = api.client("A").await;
    api.user(&a.api_key, "alice").await;
    let token = api.enrollment(&a.api_key, "alice").await["session_token"]
        .as_str()
        .unwrap()
        .to_owned();
    api.stop().await;

    let api = Api::start(config(&backing)).await;
    let (status, alice) = api
        .get("/api/clients/users/alice/", Auth::Key(&a.api_key))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(alice["external_user_id"], "alice");
    assert_eq!(
        api.session_status(&a.api_key, &token).await["status"],
        "active"
    );
    // The JWT exchange still opens the secret sealed before the restart.
    let jwt = api.jwt(&a).await;
    assert_eq!(
        api.get("/api/auth/sessions/", Auth::Jwt(&jwt)).await.1["count"],
        1
    );
    let mut socket = api.websocket(&token).await;
    assert_eq!(next_json(&mut socket).await["session_type"], "enrollment");
    api.stop().await;
}

async fn rate_limits_answer_429_with_retry_after(engine: Engine) {
    let backing = Backing::new(engine).await;
    let api = Api::start(config(&backing)).await;
    let limited = api
        .client_with(NewClient {
            name: "small".into(),
            tier: Tier::Basic,
            per_hour: Some(3),
            per_day: None,
        })
        .await;
    let other = api.client("other").await;
    for _ in 0..3 {
        assert_eq!(
            api.get("/api/clients/users/", Auth::Key(&limited.api_key))
                .await
                .0,
            StatusCode::OK
        );
    }
    let response = api
        .request(
            Method::GET,
            "/api/clients/users/",
            Auth::Key(&limited.api_key),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: i64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let answer: Value = response.json().await.unwrap();
    assert!(answer["detail"].as_str().unwrap().contains("per hour"));
    // Another client's allowance is its own.
    assert_eq!(
        api.get("/api/clients/users/", Auth::Key(&other.api_key))
            .await
            .0,
        StatusCode::OK
    );
    api.stop().await;
}

/// The OpenAPI document lists every REST route the server has.
#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_covers_every_endpoint() {
    let backing = Backing::new(Engine::Sqlite).await;
    let api = Api::start(config(&backing)).await;
    let (status, document) = api.get("/api/schema/", Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/core/auth/client/", &["post"][..]),
        (
            "/api/clients/clients/{client_id}/reset_credentials/",
            &["post"],
        ),
        ("/api/clients/users/", &["get", "post"]),
        (
            "/api/clients/users/{external_user_id}/",
            &["get", "put", "patch", "delete"],
        ),
        ("/api/clients/users/{external_user_id}/activate/", &["post"]),
        (
            "/api/clients/users/{external_user_id}/deactivate/",
            &["post"],
        ),
        (
            "/api/clients/users/{external_user_id}/enrollments/",
            &["get"],
        ),
        ("/api/auth/enrollment/", &["post"]),
        ("/api/auth/authentication/", &["post"]),
        ("/api/auth/sessions/", &["get"]),
        ("/api/auth/sessions/{session}/", &["get"]),
        ("/api/auth/sessions/{session}/status/", &["get"]),
        ("/api/core/audit-logs/", &["get"]),
        ("/api/clients/users/{external_user_id}/photo/", &["post"]),
        ("/api/clients/webhooks/", &["post", "get"]),
        ("/api/clients/webhooks/{endpoint}/", &["delete"]),
        ("/api/clients/webhook-deliveries/", &["get"]),
    ] {
        for method in methods {
            assert!(paths[path].get(*method).is_some(), "{method} {path}");
        }
        // And the server answers there (not the JSON 404 of unknown paths).
        let concrete = path
            .replace("{client_id}", "FR_0000000000000000")
            .replace("{external_user_id}", "x")
            .replace("{session}", "x")
            .replace("{endpoint}", "x");
        let (status, answer) = api
            .call(
                Method::from_bytes(methods[0].to_uppercase().as_bytes()).unwrap(),
                &concrete,
                Auth::None,
                None,
            )
            .await;
        assert_ne!(answer["detail"], "Not found.", "{path}: {status}");
    }
    assert_eq!(paths.len(), 17);
    api.stop().await;
}

/// Behind a trusted proxy, the client's address in the audit log and the scheme and host of
/// the `websocket_url` are what the proxy reports; the same headers from any other peer are
/// ignored, so a client cannot forge its address or point the URL elsewhere.
#[tokio::test(flavor = "multi_thread")]
async fn forwarding_headers_count_only_from_trusted_proxies() {
    for trusted in [true, false] {
        let backing = Backing::new(Engine::Sqlite).await;
        let mut config = config(&backing);
        if trusted {
            config.proxies.networks = vec!["127.0.0.1/32".parse().unwrap()];
        }
        let api = Api::start(config).await;
        let a = api.client("Tenant A").await;
        api.user(&a.api_key, "alice").await;
        let forwarded = |request: reqwest::RequestBuilder| {
            request
                .header("X-Forwarded-For", "203.0.113.9")
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "face.example")
        };
        let exchange = forwarded(api.request(Method::POST, "/api/core/auth/client/", Auth::None))
            .json(&json!({ "api_key": a.api_key, "api_secret": a.api_secret }))
            .send()
            .await
            .unwrap();
        assert_eq!(exchange.status(), StatusCode::OK);
        let response =
            forwarded(api.request(Method::POST, "/api/auth/enrollment/", Auth::Key(&a.api_key)))
                .json(&json!({ "user_id": "alice", "session_type": "webcam" }))
                .send()
                .await
                .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.unwrap();
        let (status, log) = api
            .get("/api/core/audit-logs/", Auth::Key(&a.api_key))
            .await;
        assert_eq!(status, StatusCode::OK);
        let issued = log["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "token_issued")
            .unwrap_or_else(|| panic!("{log}"));
        let url = created["websocket_url"].as_str().unwrap();
        if trusted {
            assert_eq!(issued["remote_addr"], "203.0.113.9");
            assert!(
                url.starts_with("wss://face.example/ws/auth/process-image/sess_"),
                "{url}"
            );
        } else {
            assert_eq!(issued["remote_addr"], "127.0.0.1");
            let direct = format!("ws://{}/ws/auth/process-image/sess_", api.server.address);
            assert!(url.starts_with(&direct), "{url}");
        }
    }
}
