//! Several face-service processes on one database. First the registry of processes on its
//! own, on both store engines: a dead process is reaped once, however many reapers race, and
//! only its open sessions end. Then the deployment for real, all on loopback: Debian's nginx
//! with the site `face-service deploy nginx` prints, in front of two `face-service serve`
//! processes (the built binary, on the CPU) on one throwaway PostgreSQL cluster, loaded by
//! `face-service bench` with sessions issued over the REST API, while one process is killed
//! with SIGKILL, or both are restarted in turn with SIGTERM.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use face_service::bench::SessionRecord;
use face_service::store::Store;
use face_service::store::processes::{Heartbeat, ProcessRow, Reaped};
use face_service::store::sessions::{Claim, SessionResult, SessionRow};

use common::deployment::Deployment;
use common::store_on;

/// Heartbeats every second and death after three, so that a test sees a reap quickly.
const HEARTBEAT_SECS: u64 = 1;
const PROCESS_TIMEOUT_SECS: u64 = 3;

/// What the deployment's processes run with here.
fn flags() -> Vec<String> {
    [
        ("--heartbeat-secs", HEARTBEAT_SECS.to_string()),
        ("--process-timeout-secs", PROCESS_TIMEOUT_SECS.to_string()),
        ("--max-frames-per-session", "0".to_owned()),
        // Sessions that turn over, so that lanes keep opening new ones.
        ("--authentication-timeout-secs", "8".to_owned()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value])
    .collect()
}

async fn deployment() -> Deployment {
    let flags = flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Deployment::start(&flags).await
}

fn process(id: &str, heartbeat_at: i64) -> ProcessRow {
    ProcessRow {
        id: id.into(),
        host: "test".into(),
        address: "127.0.0.1:0".into(),
        version: "test".into(),
        started_at: heartbeat_at,
        heartbeat_at,
        stopped_at: None,
        stop_reason: None,
    }
}

fn session(id: &str, now: i64) -> SessionRow {
    SessionRow {
        client_id: "client".into(),
        id: id.into(),
        token: format!("sess_{id}"),
        kind: "authentication".into(),
        external_user_id: None,
        enrollment_id: None,
        session_type: "webcam".into(),
        status: "active".into(),
        metadata: "{}".into(),
        required_blinks: None,
        created_at: now,
        expires_at: now + 600_000,
        opened_at: None,
        completed_at: None,
        frames_processed: None,
        liveness_verified: None,
        liveness_score: None,
        blinks_detected: None,
        motion_events: None,
        process_id: None,
        outcome: None,
    }
}

fn ended(status: &'static str, now: i64) -> SessionResult {
    SessionResult {
        status,
        completed_at: now,
        frames_processed: 7,
        liveness_verified: false,
        liveness_score: 0.0,
        blinks_detected: 0,
        motion_events: 0,
        outcome: None,
    }
}

async fn status_of(store: &Store, id: &str) -> String {
    store.session("client", id).await.unwrap().unwrap().status
}

async fn a_dead_process_is_reaped_once_and_only_its_open_sessions_end(engine: &str) {
    let (store, _cluster, dir) = store_on(engine).await;
    let now = face_service::store::now();
    let timeout = 20_000;
    // `dead` last beat a minute ago; `alive` just now.
    store
        .register_process(&process("dead", now - 60_000))
        .await
        .unwrap();
    store
        .register_process(&process("alive", now))
        .await
        .unwrap();
    for id in ["open", "finished", "elsewhere", "unopened"] {
        store.insert_session(&session(id, now), None).await.unwrap();
    }
    for (id, holder) in [
        ("open", "dead"),
        ("finished", "dead"),
        ("elsewhere", "alive"),
    ] {
        let claim = store
            .claim_session(&format!("sess_{id}"), now, holder)
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed(_)), "{claim:?}");
    }
    let finished = store
        .finish_session("client", "finished", "dead", &ended("completed", now))
        .await
        .unwrap();
    assert!(finished);

    // Four reapers at once, as four live processes noticing the same death.
    let reapers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.reap_processes(now, now - timeout).await })
        })
        .collect();
    let mut reaped: Vec<Reaped> = Vec::new();
    for reaper in reapers {
        reaped.extend(reaper.await.unwrap().unwrap());
    }
    assert_eq!(
        reaped,
        vec![Reaped {
            process_id: "dead".into(),
            sessions: 1
        }],
        "{engine}"
    );
    assert_eq!(status_of(&store, "open").await, "disconnected");
    assert_eq!(status_of(&store, "finished").await, "completed");
    assert_eq!(status_of(&store, "elsewhere").await, "active");
    assert_eq!(status_of(&store, "unopened").await, "active");

    // The dead process was only frozen: its late outcome does not overwrite the reaper's,
    // and its next heartbeat learns what happened and brings it back.
    let late = store
        .finish_session("client", "open", "dead", &ended("completed", now))
        .await
        .unwrap();
    assert!(!late);
    assert_eq!(status_of(&store, "open").await, "disconnected");
    assert_eq!(
        store.heartbeat("dead", now).await.unwrap(),
        Heartbeat::TakenForDead
    );
    assert_eq!(
        store.heartbeat("dead", now).await.unwrap(),
        Heartbeat::Alive
    );
    assert!(
        store
            .reap_processes(now, now - timeout)
            .await
            .unwrap()
            .is_empty(),
        "a process beating again is not reaped"
    );

    // A process that stops ends what it still holds; a used token stays used.
    assert_eq!(store.stop_process("alive", now).await.unwrap(), 1);
    assert_eq!(status_of(&store, "elsewhere").await, "disconnected");
    let again = store
        .claim_session("sess_open", now, "alive")
        .await
        .unwrap();
    assert_eq!(again, Claim::Used);
    let processes = store.processes().await.unwrap();
    assert_eq!(processes[0].id, "dead");
    assert_eq!(processes[1].stop_reason.as_deref(), Some("stopped"));
    store.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_sqlite_a_dead_process_is_reaped_once_and_only_its_open_sessions_end() {
    a_dead_process_is_reaped_once_and_only_its_open_sessions_end("sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn on_postgres_a_dead_process_is_reaped_once_and_only_its_open_sessions_end() {
    a_dead_process_is_reaped_once_and_only_its_open_sessions_end("postgres").await;
}

/// Every session the bench ran is stored; one that ended is stored whole; and where its
/// process recorded the end, the frames it counted are the frames the client was answered.
fn check_rows_against_records(
    records: &[SessionRecord],
    stored: &HashMap<String, SessionRow>,
    finished_by: &[&str],
) {
    for record in records {
        let row = stored
            .get(&record.token)
            .unwrap_or_else(|| panic!("{record:?} is not stored"));
        assert_ne!(row.status, "active", "{row:?}");
        assert!(
            row.opened_at.is_some() && row.completed_at.is_some(),
            "{row:?}"
        );
        let holder = row.process_id.as_deref().unwrap_or_default();
        if finished_by.contains(&holder) && row.frames_processed.is_some() {
            assert_eq!(
                row.frames_processed,
                Some(record.frames_processed as i64),
                "{record:?} {row:?}"
            );
        }
    }
}

/// One process killed with SIGKILL under load: its sockets are cut, the other's sessions go on
/// without an error answer, new sessions land on the survivor, and the survivor marks the dead
/// process's sessions `disconnected` within the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_under_load_loses_only_its_own_sessions() {
    let mut deployment = deployment().await;
    let load = deployment.load(6, 5.0, 16);
    deployment.until_every_server_holds_sessions().await;
    let dead = deployment.servers[0].process_id().await;
    let survivor = deployment.servers[1].process_id().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    deployment.servers[0].kill();
    let killed_at = face_service::store::now();

    // Within the timeout and a beat or two, the survivor has ended the dead one's sessions.
    let deadline = Instant::now() + Duration::from_secs(PROCESS_TIMEOUT_SECS + 4 * HEARTBEAT_SECS);
    loop {
        let stored = deployment.stored_sessions().await;
        let open_on_dead = stored
            .values()
            .filter(|s| s.process_id.as_deref() == Some(&dead) && s.status == "active")
            .count();
        if open_on_dead == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open_on_dead} sessions of the dead process still active"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let processes = deployment.processes().await;
    let row = |id: &str| processes.iter().find(|p| p.id == id).unwrap().clone();
    assert_eq!(row(&dead).stop_reason.as_deref(), Some("reaped"));
    assert_eq!(row(&survivor).stopped_at, None);

    let report = load.await.unwrap();
    eprintln!("{}", report.summary());
    assert!(report.errors.is_empty(), "an error answer: {report:?}");
    let stored = deployment.settled_sessions().await;
    let holder = |record: &SessionRecord| stored[&record.token].process_id.clone().unwrap();
    let cut: Vec<&SessionRecord> = report.records.iter().filter(|r| r.cut).collect();
    assert!(!cut.is_empty(), "the killed process held sessions");
    for record in &cut {
        assert_eq!(
            holder(record),
            dead,
            "only the dead process's sockets are cut"
        );
        assert_eq!(stored[&record.token].status, "disconnected");
    }
    for record in report.records.iter().filter(|r| holder(r) == survivor) {
        assert!(!record.cut && record.errors == 0, "{record:?}");
    }
    let after_the_kill: Vec<&SessionRow> = stored
        .values()
        .filter(|s| s.opened_at.is_some_and(|t| t > killed_at))
        .collect();
    assert!(
        !after_the_kill.is_empty(),
        "no session opened after the kill"
    );
    assert!(
        after_the_kill
            .iter()
            .all(|s| s.process_id.as_deref() == Some(&survivor)),
        "a session landed on the dead process"
    );
    check_rows_against_records(&report.records, &stored, &[&survivor]);
    // A failure to open is a creation or upgrade that was under way on the killed process.
    assert!(report.open_failures <= 6, "{report:?}");
    assert!(deployment.servers[1].terminate().await.success());
}

/// A rolling restart under load: SIGTERM one process, start it again, then the other. A
/// process that is draining answers every frame it took and closes its sessions with 1001;
/// no socket is cut, no session fails to open, and each lane goes on on another process.
#[tokio::test(flavor = "multi_thread")]
async fn a_rolling_restart_under_load_loses_no_frame_taken() {
    let mut deployment = deployment().await;
    let load = deployment.load(6, 5.0, 50);
    let mut drained = Vec::new();
    for index in 0..2 {
        // nginx has sent sessions to the restarted process again (after a refused connection
        // it leaves a process out for its fail_timeout, 10 s): the other may go now.
        deployment.until_every_server_holds_sessions().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        drained.push(deployment.servers[index].process_id().await);
        let status = deployment.servers[index].terminate().await;
        assert!(status.success(), "exit status {status}");
        deployment.restart(index);
    }
    let report = load.await.unwrap();
    eprintln!("{}", report.summary());
    assert!(report.errors.is_empty(), "an error answer: {report:?}");
    assert_eq!(report.sessions_cut, 0, "{report:?}");
    assert_eq!(report.open_failures, 0, "{report:?}");
    assert!(
        report.closed.get(&1001).is_some_and(|&n| n >= 2),
        "{report:?}"
    );
    let stored = deployment.settled_sessions().await;
    let mut finished_by: Vec<String> = drained.clone();
    for server in &deployment.servers {
        finished_by.push(server.process_id().await);
    }
    let finished_by: Vec<&str> = finished_by.iter().map(String::as_str).collect();
    check_rows_against_records(&report.records, &stored, &finished_by);
    // Those the drain closed: the whole count stored, none left to a reaper.
    for record in report.records.iter().filter(|r| r.close == Some(1001)) {
        let row = &stored[&record.token];
        assert!(
            drained.contains(row.process_id.as_ref().unwrap()),
            "{row:?}"
        );
        assert_eq!(row.frames_processed, Some(record.frames_processed as i64));
    }
    for process in deployment.processes().await {
        let expected = if drained.contains(&process.id) {
            Some("stopped")
        } else {
            None
        };
        assert_eq!(process.stop_reason.as_deref(), expected, "{process:?}");
    }
    for server in &mut deployment.servers {
        assert!(server.terminate().await.success());
    }
}

/// Identity across processes: a face enrolled through one process signs in through the other
/// at once, and once the user is deleted through the first, the second matches it no more.
#[tokio::test(flavor = "multi_thread")]
async fn a_face_enrolled_through_one_process_signs_in_through_the_other() {
    use common::client::run_until_verdict;
    use serde_json::{Value, json};
    let deployment = deployment().await;
    let http = reqwest::Client::new();
    let [first, second] = [0, 1].map(|i| format!("http://{}", deployment.servers[i].address));
    let call = |method: reqwest::Method, url: String, body: Value| {
        http.request(method, url)
            .header("X-API-Key", &deployment.api_key)
            .json(&body)
            .send()
    };
    let post = |url: String, body: Value| async {
        let answer = call(reqwest::Method::POST, url, body).await.unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        answer.json::<Value>().await.unwrap()
    };
    post(
        format!("{first}/api/clients/users/"),
        json!({ "external_user_id": "alice" }),
    )
    .await;
    let clip = face_service::bench::footage::carphone_jpegs(640, 480, 90).unwrap();
    // The seed's rate: the processes run with its frame limit.
    let pace = Some(Duration::from_secs_f64(1.0 / 9.5));
    let session = post(
        format!("{first}/api/auth/enrollment/"),
        json!({ "user_id": "alice" }),
    )
    .await;
    let (enrolled, _) =
        run_until_verdict(session["websocket_url"].as_str().unwrap(), &clip, pace).await;
    assert_eq!(enrolled["type"], "enrollment_complete", "{enrolled}");

    let clip = &clip;
    let identify = |base: String| async move {
        // One blink, inside the deployment's 8 s authentication timeout.
        let body = json!({ "metadata": { "required_blinks": 1 } });
        let session = post(format!("{base}/api/auth/authentication/"), body).await;
        run_until_verdict(session["websocket_url"].as_str().unwrap(), clip, pace)
            .await
            .0
    };
    let signed_in = identify(second.clone()).await;
    assert_eq!(signed_in["authenticated"], true, "{signed_in}");
    assert_eq!(signed_in["user_id"], "alice");

    let deleted = call(
        reqwest::Method::DELETE,
        format!("{first}/api/clients/users/alice/"),
        Value::Null,
    )
    .await
    .unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = identify(second).await;
    assert_eq!(gone["authenticated"], false, "{gone}");
    assert_eq!(gone["reason"], "no_match");
}
