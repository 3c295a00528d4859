//! The load harness behind `face-service bench`: N sessions speaking the seed's protocol to a
//! running server, sending real frames at a fixed rate (or as fast as answers come back), and
//! a report of what came back and how long it took.

pub mod footage;
pub mod server_metrics;
pub mod soak;
pub mod sweep;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::bench::server_metrics::{ServerMeasures, scrape};

/// The frames of a file given to `--frames`: an MJPEG stream (JPEG images back to back) is
/// split at each image's end-of-image marker (inside a JPEG's data, 0xFF is always escaped, so
/// the marker cannot appear by chance); anything else is one frame.
pub fn frames_of_file(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    const START: [u8; 2] = [0xFF, 0xD8];
    const END: [u8; 2] = [0xFF, 0xD9];
    if !bytes.starts_with(&START) {
        return vec![bytes];
    }
    let mut frames = Vec::new();
    let mut start = 0;
    let mut at = 2;
    while at + 1 < bytes.len() {
        if bytes[at..at + 2] == END {
            frames.push(bytes[start..at + 2].to_vec());
            start = at + 2;
            at = start + 2;
        } else {
            at += 1;
        }
    }
    if start < bytes.len() {
        // A last frame without its end marker: sent as it is, to be refused as truncated.
        frames.push(bytes[start..].to_vec());
    }
    frames
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `ws://host:port` of the server.
    pub url: String,
    pub sessions: usize,
    /// Frames per second per session; `None` sends the next frame when the last is answered.
    pub fps: Option<f32>,
    pub duration: Duration,
    /// Answers in this first stretch are not counted (kernels compiling, queues filling).
    pub warmup: Duration,
    /// Encoded frames (JPEG/PNG), sent in turn.
    pub frames: Vec<Vec<u8>>,
    /// Send frames as binary messages instead of the seed's JSON base64.
    pub binary: bool,
    /// Print a progress line to stderr every few seconds.
    pub progress: bool,
    /// A tenant's API key: each session is then created over the REST API first (an
    /// authentication session), as a tenant's backend does, instead of with an open-mode token.
    pub api_key: Option<String>,
}

/// What the sessions saw, counted after the warm-up.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BenchReport {
    pub sessions: usize,
    pub seconds: f64,
    pub frames_sent: u64,
    pub frames_answered: u64,
    pub faces: u64,
    pub no_face: u64,
    /// Frames with a face too poor to judge (`frame_rejected`).
    pub quality_rejected: u64,
    /// Error answers by protocol code.
    pub errors: BTreeMap<u16, u64>,
    /// Sessions the server closed, by close code.
    pub closed: BTreeMap<u16, u64>,
    /// Sessions run: each lane opens the next when one ends.
    pub sessions_opened: u64,
    /// Sessions whose socket ended without a close frame.
    pub sessions_cut: u64,
    /// Sessions that could not be created or connected, and why (the first few).
    pub open_failures: u64,
    pub open_failure_examples: Vec<String>,
    pub answers_per_second: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// What the server measured over the same stretch, from its `/metrics`.
    pub server: Option<ServerMeasures>,
    /// Every session, in the order the lanes ran them.
    pub records: Vec<SessionRecord>,
}

/// Counts across sessions while the run goes, for the progress line.
#[derive(Default)]
struct LiveCounts {
    sent: AtomicU64,
    answered: AtomicU64,
    errors: AtomicU64,
}

/// The fields of an answer that the tally reads; serde skips the rest (the landmarks are most
/// of an answer) without building them.
#[derive(Deserialize)]
struct AnswerSummary {
    #[serde(rename = "type")]
    kind: String,
    success: Option<bool>,
    code: Option<u16>,
}

/// What a lane's sessions saw after the warm-up.
#[derive(Default)]
struct SessionTally {
    sent: u64,
    answered: u64,
    faces: u64,
    no_face: u64,
    quality_rejected: u64,
    errors: BTreeMap<u16, u64>,
    closed: BTreeMap<u16, u64>,
    latencies_ms: Vec<f64>,
}

/// A lane's findings: the tally, each session it ran, and the sessions it could not open.
#[derive(Default)]
struct LaneTally {
    tally: SessionTally,
    records: Vec<SessionRecord>,
    failed_to_open: Vec<String>,
}

/// One session from start to end, warm-up included: what the server's own account of it
/// (the stored session's `frames_processed`) can be checked against.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionRecord {
    pub token: String,
    /// The server's close code; none when the bench ended the session, or the socket was cut.
    pub close: Option<u16>,
    /// The socket ended without a close frame: the server, or the path to it, went away.
    pub cut: bool,
    pub frames_sent: u64,
    /// Frames answered `frame_processed` or `frame_rejected` (those the server ran).
    pub frames_processed: u64,
    /// Frames answered with an error.
    pub errors: u64,
}

const MAX_FAILURE_EXAMPLES: usize = 5;

pub async fn run(config: BenchConfig) -> Result<BenchReport, String> {
    if config.frames.is_empty() {
        return Err("no frames to send".into());
    }
    let started = Instant::now();
    let counted_from = started + config.warmup;
    let until = counted_from + config.duration;
    let live = Arc::new(LiveCounts::default());
    let http = reqwest::Client::new();
    let mut lanes = Vec::new();
    for index in 0..config.sessions {
        lanes.push(tokio::spawn(lane(
            config.clone(),
            http.clone(),
            index,
            counted_from,
            until,
            live.clone(),
        )));
    }
    // The server's own metrics over the measured stretch (none from servers without them).
    let server_measures = {
        let url = config.url.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(counted_from.into()).await;
            let before = scrape(&url).await.ok()?;
            tokio::time::sleep_until(until.into()).await;
            let after = scrape(&url).await.ok()?;
            ServerMeasures::between(&before, &after)
        })
    };
    let progress = config.progress.then(|| {
        let live = live.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_secs(5));
            ticks.tick().await;
            loop {
                ticks.tick().await;
                eprintln!(
                    "{:>5.0} s: {} sent, {} answered, {} errors",
                    started.elapsed().as_secs_f64(),
                    live.sent.load(Ordering::Relaxed),
                    live.answered.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed)
                );
            }
        })
    });
    let mut report = BenchReport {
        sessions: config.sessions,
        seconds: config.duration.as_secs_f64(),
        ..BenchReport::default()
    };
    let mut latencies = Vec::new();
    for task in lanes {
        let LaneTally {
            tally,
            records,
            failed_to_open,
        } = task.await.map_err(|e| e.to_string())??;
        report.sessions_opened += records.len() as u64;
        report.sessions_cut += records.iter().filter(|r| r.cut).count() as u64;
        report.records.extend(records);
        report.open_failures += failed_to_open.len() as u64;
        let room = MAX_FAILURE_EXAMPLES.saturating_sub(report.open_failure_examples.len());
        report
            .open_failure_examples
            .extend(failed_to_open.into_iter().take(room));
        report.frames_sent += tally.sent;
        report.frames_answered += tally.answered;
        report.faces += tally.faces;
        report.no_face += tally.no_face;
        report.quality_rejected += tally.quality_rejected;
        for (code, count) in tally.errors {
            *report.errors.entry(code).or_default() += count;
        }
        for (code, count) in tally.closed {
            *report.closed.entry(code).or_default() += count;
        }
        latencies.extend(tally.latencies_ms);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    report.latency_ms_p50 = at(0.5);
    report.latency_ms_p90 = at(0.9);
    report.latency_ms_p99 = at(0.99);
    report.latency_ms_max = latencies.last().copied().unwrap_or(0.0);
    report.answers_per_second = report.frames_answered as f64 / report.seconds;
    report.server = server_measures.await.map_err(|e| e.to_string())?;
    if let Some(progress) = progress {
        progress.abort();
    }
    Ok(report)
}

fn frame_message(frame: &[u8], binary: bool) -> Message {
    if binary {
        Message::binary(frame.to_vec())
    } else {
        let data = base64::engine::general_purpose::STANDARD.encode(frame);
        Message::text(
            json!({ "type": "frame", "image": format!("data:image/jpeg;base64,{data}") })
                .to_string(),
        )
    }
}

/// One lane of load: sessions one after another until the run ends, each opened as the one
/// before it closes (a liveness check that concluded, a server that went away).
async fn lane(
    config: BenchConfig,
    http: reqwest::Client,
    index: usize,
    counted_from: Instant,
    until: Instant,
    live: Arc<LiveCounts>,
) -> Result<LaneTally, String> {
    let mut lane = LaneTally::default();
    let mut opened = 0;
    while Instant::now() < until {
        let url = match session_url(&config, &http, index, opened).await {
            Ok(url) => url,
            Err(error) => {
                lane.failed_to_open.push(error);
                tokio::time::sleep(REOPEN_PAUSE).await;
                continue;
            }
        };
        opened += 1;
        let socket = match tokio_tungstenite::connect_async(&url).await {
            Ok((socket, _)) => socket,
            Err(error) => {
                lane.failed_to_open.push(format!("{url}: {error}"));
                tokio::time::sleep(REOPEN_PAUSE).await;
                continue;
            }
        };
        let record = session(socket, &config, &mut lane.tally, counted_from, until, &live).await?;
        if record.cut {
            tokio::time::sleep(REOPEN_PAUSE).await;
        }
        lane.records.push(SessionRecord {
            token: token_of(&url),
            ..record
        });
    }
    Ok(lane)
}

/// After a session could not open or was cut, a pause before the next, so that a server
/// that is down is not hammered.
const REOPEN_PAUSE: Duration = Duration::from_millis(200);

/// The WebSocket URL of a lane's next session: issued over the REST API with the API key,
/// or else an open-mode token of the bench's own.
async fn session_url(
    config: &BenchConfig,
    http: &reqwest::Client,
    index: usize,
    opened: usize,
) -> Result<String, String> {
    let base = config.url.trim_end_matches('/');
    let Some(api_key) = &config.api_key else {
        return Ok(format!(
            "{base}/ws/auth/process-image/bench_{index}_{opened}/"
        ));
    };
    let endpoint = format!(
        "{}/api/auth/authentication/",
        base.replacen("ws", "http", 1)
    );
    let response = http
        .post(&endpoint)
        .header("X-API-Key", api_key)
        .json(&json!({ "session_type": "webcam" }))
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let status = response.status();
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|e| format!("{endpoint}: {status}: {e}"))?;
    body["websocket_url"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{endpoint}: {status}: {body}"))
}

/// The session token at the end of a WebSocket URL.
fn token_of(url: &str) -> String {
    url.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs one session until the server closes it or the run ends, adding what came back after
/// the warm-up to `tally`.
async fn session(
    socket: Socket,
    config: &BenchConfig,
    tally: &mut SessionTally,
    counted_from: Instant,
    until: Instant,
    live: &Arc<LiveCounts>,
) -> Result<SessionRecord, String> {
    let (mut sink, mut stream) = socket.split();
    // Send times of the frames not answered yet: answers come back in order.
    let (sent_at, mut sent_rx) = mpsc::unbounded_channel::<Instant>();
    let (answered, mut answered_rx) = mpsc::unbounded_channel::<()>();
    let sender = {
        let config = config.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let period = config.fps.map(|fps| Duration::from_secs_f32(1.0 / fps));
            let mut next_frame = 0;
            let (mut sent, mut counted) = (0u64, 0u64);
            while Instant::now() < until {
                let message = frame_message(
                    &config.frames[next_frame % config.frames.len()],
                    config.binary,
                );
                next_frame += 1;
                let now = Instant::now();
                if sink.send(message).await.is_err() || sent_at.send(now).is_err() {
                    break;
                }
                sent += 1;
                if now >= counted_from {
                    counted += 1;
                    live.sent.fetch_add(1, Ordering::Relaxed);
                }
                match period {
                    Some(period) => tokio::time::sleep_until((now + period).into()).await,
                    None => {
                        if answered_rx.recv().await.is_none() {
                            break;
                        }
                    }
                }
            }
            // The socket closes only once the answers owed have come back (below): a server
            // drops the frames of a client that said goodbye.
            (sent, counted, sink)
        })
    };
    let mut record = SessionRecord::default();
    let mut pending: VecDeque<Instant> = VecDeque::new();
    // After the last send, wait a little for the answers still owed.
    let drain_until = until + Duration::from_secs(5);
    // Set when the sender has sent its last frame (its channel of send times closes).
    let mut sender_done = false;
    loop {
        let message = tokio::select! {
            time = sent_rx.recv(), if !sender_done => {
                match time {
                    Some(time) => pending.push_back(time),
                    None => sender_done = true,
                }
                if sender_done && pending.is_empty() {
                    break;
                }
                continue;
            }
            next = tokio::time::timeout_at(drain_until.into(), stream.next()) => match next {
                Ok(Some(Ok(message))) => message,
                Ok(Some(Err(_)) | None) => {
                    record.cut = true;
                    break;
                }
                Err(_answers_late) => break,
            },
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                record.close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                break;
            }
            _ => continue,
        };
        let answer: AnswerSummary = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let kind = answer.kind.as_str();
        if !matches!(kind, "frame_processed" | "frame_rejected" | "error") {
            continue;
        }
        while let Ok(time) = sent_rx.try_recv() {
            pending.push_back(time);
        }
        let Some(sent) = pending.pop_front() else {
            continue;
        };
        let _ = answered.send(());
        if kind == "error" {
            record.errors += 1;
        } else {
            record.frames_processed += 1;
        }
        if sent < counted_from {
            continue;
        }
        tally.answered += 1;
        live.answered.fetch_add(1, Ordering::Relaxed);
        tally.latencies_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        match (kind, answer.success) {
            ("frame_processed", Some(true)) => tally.faces += 1,
            ("frame_processed", _) => tally.no_face += 1,
            ("frame_rejected", _) => tally.quality_rejected += 1,
            _ => {
                live.errors.fetch_add(1, Ordering::Relaxed);
                *tally.errors.entry(answer.code.unwrap_or(0)).or_default() += 1
            }
        }
        if sender_done && pending.is_empty() {
            break;
        }
    }
    drop(answered);
    let (sent, counted, mut sink) = sender.await.map_err(|e| e.to_string())?;
    let _ = sink.close().await;
    record.frames_sent = sent;
    tally.sent += counted;
    if let Some(code) = record.close {
        *tally.closed.entry(code).or_default() += 1;
    }
    Ok(record)
}

impl BenchReport {
    /// A summary for a person.
    pub fn summary(&self) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let closed: Vec<String> = self
            .closed
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        let server = self
            .server
            .as_ref()
            .map_or(String::new(), |server| format!("\n{}", server.summary()));
        let failures = self
            .open_failure_examples
            .iter()
            .map(|failure| format!("\ncould not open a session: {failure}"))
            .collect::<String>();
        format!(
            "{} sessions ({} opened, {} cut, {} failed to open), {:.0} s: {} frames sent, {} answered ({:.1}/s): {} faces, {} without a face, {} rejected for quality, errors [{}], sessions closed [{}]\n\
             latency ms: p50 {:.1}, p90 {:.1}, p99 {:.1}, max {:.1}{}",
            self.sessions,
            self.sessions_opened,
            self.sessions_cut,
            self.open_failures,
            self.seconds,
            self.frames_sent,
            self.frames_answered,
            self.answers_per_second,
            self.faces,
            self.no_face,
            self.quality_rejected,
            errors.join(", "),
            closed.join(", "),
            self.latency_ms_p50,
            self.latency_ms_p90,
            self.latency_ms_p99,
            self.latency_ms_max,
            server,
        ) + &failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::footage::carphone_clip;

    #[test]
    fn an_mjpeg_stream_splits_into_its_jpeg_frames() {
        let frames = carphone_clip(64, 48).unwrap();
        let jpegs: Vec<Vec<u8>> = frames[..3]
            .iter()
            .map(|frame| {
                let mut jpeg = Vec::new();
                image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
                    .encode_image(frame)
                    .unwrap();
                jpeg
            })
            .collect();
        assert_eq!(frames_of_file(jpegs.concat()), jpegs);
        // A PNG (or any other file) is one frame.
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        assert_eq!(frames_of_file(png.clone()), vec![png]);
    }
}
