//! Container names from the Docker Engine API, without ever making the caller wait.
//!
//! A cgroup path gives a container id; people know containers by name, and outside Kubernetes
//! only the Docker daemon knows it: `GET /containers/<id>/json` on its unix socket. Names are
//! asked for while the pipeline holds its lock, so [`Docker::name`] does no I/O: it answers
//! from a cache, and on a miss starts a lookup on the runtime the `Docker` was made on and
//! says [`Lookup::Pending`]. The caller asks again later (the pipeline, at its next sweep)
//! and finds the answer the lookup left in the cache.
//!
//! A process that lives less than a sweep is named once, when its counts are retired: a lookup
//! started then comes too late for it. So a follower also reads the daemon's event stream
//! (`GET /events`, containers' `create` and `rename`) and caches each container's name as it
//! is created, before its first process runs; each time the stream starts it also lists the
//! running containers (`GET /containers/json`), for those created while it was not open.
//!
//! Everything is bounded. A lookup (connect, request, whole response) takes at most 1 s and
//! reads at most 4 MiB; 8 run at a time; 4096 answers are cached, the first to expire goes
//! first. Names are trusted 5 minutes (a `docker rename` shows eventually, at once through the
//! event stream); "no such container" and answers that are not a container 30 s. A daemon
//! that cannot be reached is left alone for a back-off (1 s, doubling up to 30 s): meanwhile
//! the cache answers, then one lookup at a time finds out whether it is back.
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use super::http_get::{self, Connection};
use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::{Response, StatusCode, body::Incoming};
use log::{debug, info};
use serde::Deserialize;
use tokio::{net::UnixStream, runtime::Handle, task::JoinHandle};

/// The bounds and lifetimes described above (tests shorten some).
#[derive(Clone, Debug)]
struct Limits {
    /// One lookup: connect, request and the whole response.
    timeout: Duration,
    /// An inspect response is a few KiB; anything far larger is not one.
    max_body: usize,
    /// How long a name is trusted.
    name_ttl: Duration,
    /// How long "no such container" and refused answers are kept.
    miss_ttl: Duration,
    /// How long an unreachable daemon is left alone: doubling from the first, capped.
    down_first: Duration,
    down_cap: Duration,
    max_entries: usize,
    max_in_flight: usize,
    follow_events: bool,
}

const LIMITS: Limits = Limits {
    timeout: Duration::from_secs(1),
    max_body: 4 << 20,
    name_ttl: Duration::from_secs(300),
    miss_ttl: Duration::from_secs(30),
    down_first: Duration::from_secs(1),
    down_cap: Duration::from_secs(30),
    max_entries: 4096,
    max_in_flight: 8,
    follow_events: true,
};

/// One event is a few KiB (its attributes are the container's labels).
const MAX_EVENT: usize = 1 << 20;
/// The running containers, a few KiB each: thousands fit.
const LIST_PATH: &str = "/containers/json";
const MAX_LIST: usize = 32 << 20;
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// `/events` for containers' `create` and `rename`; the filter, before percent-encoding, is
/// `{"type":["container"],"event":["create","rename"]}`.
const EVENTS_PATH: &str = "/events?filters=%7B%22type%22%3A%5B%22container%22%5D%2C%22event%22%3A\
                           %5B%22create%22%2C%22rename%22%5D%7D";

/// What [`Docker::name`] knows of a container at the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Its name, without Docker's leading `/`.
    Name(String),
    /// The daemon does not know it (another runtime's container, or gone).
    NotFound,
    /// Not known yet: a lookup is running, or waits for one of the slots.
    Pending,
    /// The last lookup failed, or the daemon is not reachable: the error. Retried later.
    Failed(String),
}

impl Lookup {
    pub fn into_name(self) -> Option<String> {
        match self {
            Lookup::Name(name) => Some(name),
            Lookup::NotFound | Lookup::Pending | Lookup::Failed(_) => None,
        }
    }
}

/// A Docker daemon, asked for container names.
pub struct Docker {
    shared: Arc<Shared>,
    /// Where lookups run: the caller may be a thread that has no runtime.
    runtime: Handle,
    follower: Option<JoinHandle<()>>,
}

/// What the lookup tasks and the follower share with the callers.
struct Shared {
    socket: PathBuf,
    limits: Limits,
    /// Held for map accesses only, never across I/O.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    in_flight: usize,
    /// Set once a lookup could not reach the daemon, cleared by the next answer.
    down: Option<Down>,
}

struct Entry {
    /// The last answer (`None` before the first): still given while it is asked again.
    answer: Option<Answer>,
    /// When it is to be asked again.
    until: Instant,
    /// A lookup is running; entries being asked are never evicted.
    asking: bool,
}

#[derive(Clone, Debug)]
enum Answer {
    Name(String),
    NotFound,
    /// The daemon answered, but not with a container (an HTTP error, not JSON): the error.
    Refused(String),
}

impl From<Answer> for Lookup {
    fn from(answer: Answer) -> Lookup {
        match answer {
            Answer::Name(name) => Lookup::Name(name),
            Answer::NotFound => Lookup::NotFound,
            Answer::Refused(error) => Lookup::Failed(error),
        }
    }
}

struct Down {
    /// The last failure, `{:#}`-formatted.
    error: String,
    /// Failures in a row, for the back-off.
    failures: u32,
    until: Instant,
}

/// Why a lookup has no answer.
#[derive(Debug)]
enum Failure {
    /// Nothing came back: the daemon is not there, hangs, or dropped the connection.
    Unreachable(anyhow::Error),
    /// The daemon answered, but not with a container.
    Refused(anyhow::Error),
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Unreachable(err) | Failure::Refused(err) => err,
        }
    }

    fn context(self, context: String) -> Failure {
        match self {
            Failure::Unreachable(err) => Failure::Unreachable(err.context(context)),
            Failure::Refused(err) => Failure::Refused(err.context(context)),
        }
    }
}

/// The one field of `GET /containers/<id>/json` the agent needs.
#[derive(Deserialize)]
struct Inspect {
    #[serde(rename = "Name")]
    name: Option<String>,
}

/// Docker's error body.
#[derive(Deserialize)]
struct ErrorBody {
    message: String,
}

/// One container of `GET /containers/json` (the fields the agent reads).
#[derive(Deserialize)]
struct Listed {
    #[serde(rename = "Id", default)]
    id: String,
    #[serde(rename = "Names", default)]
    names: Vec<String>,
}

/// One message of the event stream (the fields the agent reads).
#[derive(Deserialize)]
struct Event {
    #[serde(rename = "Type", default)]
    kind: String,
    #[serde(rename = "Action", default)]
    action: String,
    #[serde(rename = "Actor", default)]
    actor: Actor,
}

#[derive(Default, Deserialize)]
struct Actor {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Attributes", default)]
    attributes: HashMap<String, String>,
}

impl Docker {
    /// A client of the daemon listening on `socket` (usually `/var/run/docker.sock`), whose
    /// lookups and event follower run on `runtime`. A daemon that is not there yet is found
    /// when it comes.
    pub fn new(socket: PathBuf, runtime: Handle) -> Self {
        Self::with_limits(socket, runtime, LIMITS)
    }

    fn with_limits(socket: PathBuf, runtime: Handle, limits: Limits) -> Self {
        let shared = Arc::new(Shared {
            socket,
            limits,
            state: Mutex::new(State::default()),
        });
        let follower = shared
            .limits
            .follow_events
            .then(|| runtime.spawn(follow(Arc::clone(&shared))));
        Docker {
            shared,
            runtime,
            follower,
        }
    }

    /// What is known of container `id` now; never waits. When nothing fresh is known a lookup
    /// starts (unless the daemon is being left alone, or all slots are taken), and until it
    /// ends the last answer is given again, or `Pending` if there is none.
    pub fn name(&self, id: &str) -> Lookup {
        // The id goes into the request path: only what Docker ids and names are made of.
        if !is_container_id(id) {
            return Lookup::Failed(format!("not a container id: {id:?}"));
        }
        let limits = &self.shared.limits;
        let now = Instant::now();
        let mut state = self.shared.lock();
        let (last, fresh) = match state.entries.get(id) {
            Some(entry) => (entry.answer.clone(), entry.asking || entry.until > now),
            None => (None, false),
        };
        let last = |otherwise: Lookup| last.map_or(otherwise, Lookup::from);
        if fresh {
            return last(Lookup::Pending);
        }
        if let Some(down) = &state.down {
            // One lookup at a time finds out whether an unreachable daemon is back.
            if down.until > now || state.in_flight > 0 {
                return last(Lookup::Failed(down.error.clone()));
            }
        }
        if state.in_flight >= limits.max_in_flight {
            return last(Lookup::Pending);
        }
        state.entry(id, now, limits.max_entries).asking = true;
        state.in_flight += 1;
        drop(state);
        let asking = Asking {
            shared: Arc::clone(&self.shared),
            id: id.to_owned(),
            outcome: None,
        };
        self.runtime.spawn(asking.run());
        last(Lookup::Pending)
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Some(follower) = &self.follower {
            follower.abort();
        }
    }
}

/// Ids as Docker makes them (64 hex digits) and names as it accepts them.
fn is_container_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a usable map.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Caches a lookup's outcome; `None`: the lookup was dropped unfinished (runtime shut
    /// down), so only its slot is given back.
    fn finish(&self, id: &str, outcome: Option<Result<Option<String>, Failure>>, now: Instant) {
        let limits = &self.limits;
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        let answered = match outcome {
            None => None,
            Some(Ok(Some(name))) => Some((Answer::Name(name), limits.name_ttl)),
            Some(Ok(None)) => Some((Answer::NotFound, limits.miss_ttl)),
            Some(Err(Failure::Refused(err))) => {
                debug!("{err:#}");
                Some((Answer::Refused(format!("{err:#}")), limits.miss_ttl))
            }
            Some(Err(Failure::Unreachable(err))) => {
                let failures = state.down.as_ref().map_or(0, |down| down.failures) + 1;
                let delay = limits
                    .down_first
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(limits.down_cap);
                let error = format!("{err:#}");
                if failures == 1 {
                    info!("{error}: container names from Docker wait until it answers");
                } else {
                    debug!("{error} (asked again in {delay:?})");
                }
                state.down = Some(Down {
                    error,
                    failures,
                    until: now + delay,
                });
                None
            }
        };
        let Some((answer, ttl)) = answered else {
            // Asked again once the daemon may be back.
            if let Some(entry) = state.entries.get_mut(id) {
                entry.asking = false;
            }
            return;
        };
        if state.down.take().is_some() {
            info!("Docker API at {} answers again", self.socket.display());
        }
        let entry = state.entry(id, now, limits.max_entries);
        entry.answer = Some(answer);
        entry.until = now + ttl;
        entry.asking = false;
    }

    /// A line of the event stream: a created or renamed container's name is cached.
    fn learn(&self, line: &[u8], now: Instant) {
        let event: Event = match serde_json::from_slice(line) {
            Ok(event) => event,
            Err(err) => {
                debug!("skipping a Docker event that is not JSON: {err}");
                return;
            }
        };
        if event.kind != "container" || !matches!(event.action.as_str(), "create" | "rename") {
            return;
        }
        let id = event.actor.id.to_ascii_lowercase();
        let name = event
            .actor
            .attributes
            .get("name")
            .map(|name| name.trim_start_matches('/'))
            .filter(|name| !name.is_empty());
        let Some(name) = name.filter(|_| is_container_id(&id)) else {
            return;
        };
        debug!("Docker container {id} is named {name} ({})", event.action);
        self.remember(&id, name, now);
    }

    /// The running containers' names, listed when the event stream starts: the containers
    /// created while no stream was open.
    fn learn_list(&self, containers: Vec<Listed>, now: Instant) {
        for container in containers {
            let id = container.id.to_ascii_lowercase();
            // Legacy links add `/<other>/<alias>` names; the container's own has no inner `/`.
            let name = container
                .names
                .iter()
                .map(|name| name.trim_start_matches('/'))
                .find(|name| !name.is_empty() && !name.contains('/'));
            if let Some(name) = name.filter(|_| is_container_id(&id)) {
                self.remember(&id, name, now);
            }
        }
    }

    fn remember(&self, id: &str, name: &str, now: Instant) {
        let mut state = self.lock();
        let entry = state.entry(id, now, self.limits.max_entries);
        entry.answer = Some(Answer::Name(name.to_owned()));
        entry.until = now + self.limits.name_ttl;
    }
}

impl State {
    /// The entry of `id`, a new one (never answered, due now) if there is none.
    fn entry(&mut self, id: &str, now: Instant, max_entries: usize) -> &mut Entry {
        if !self.entries.contains_key(id) {
            self.make_room(now, max_entries);
        }
        self.entries.entry(id.to_owned()).or_insert(Entry {
            answer: None,
            until: now,
            asking: false,
        })
    }

    /// Makes room for one more entry: expired ones go first, then those that expire first,
    /// an eighth of the cache at a time (so that a full cache is not scanned at every entry).
    /// Entries being asked stay (there are at most `max_in_flight` of them).
    fn make_room(&mut self, now: Instant, max_entries: usize) {
        if self.entries.len() < max_entries {
            return;
        }
        self.entries
            .retain(|_, entry| entry.asking || entry.until > now);
        if self.entries.len() < max_entries {
            return;
        }
        let mut by_expiry: Vec<(Instant, String)> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.asking)
            .map(|(id, entry)| (entry.until, id.clone()))
            .collect();
        by_expiry.sort_unstable();
        let excess = self.entries.len() + 1 - max_entries + max_entries / 8;
        for (_, id) in by_expiry.into_iter().take(excess) {
            self.entries.remove(&id);
        }
    }
}

/// One lookup's task. Its outcome reaches the cache when it is dropped, so that a task dropped
/// unfinished gives its slot back too.
struct Asking {
    shared: Arc<Shared>,
    id: String,
    outcome: Option<Result<Option<String>, Failure>>,
}

impl Asking {
    async fn run(mut self) {
        self.outcome = Some(inspect(&self.shared.socket, &self.id, &self.shared.limits).await);
    }
}

impl Drop for Asking {
    fn drop(&mut self) {
        self.shared
            .finish(&self.id, self.outcome.take(), Instant::now());
    }
}

/// The name of container `id`; `None` when the daemon does not know it.
async fn inspect(socket: &Path, id: &str, limits: &Limits) -> Result<Option<String>, Failure> {
    let exchange = async {
        let path = format!("/containers/{id}/json");
        let (response, _connection) = get(socket, &path).await.map_err(Failure::Unreachable)?;
        let status = response.status();
        let body = read_body(response.into_body(), limits.max_body).await?;
        match status {
            StatusCode::OK => {
                let inspect: Inspect = serde_json::from_slice(&body)
                    .context("response is not container JSON")
                    .map_err(Failure::Refused)?;
                Ok(inspect
                    .name
                    .map(|name| name.trim_start_matches('/').to_owned())
                    .filter(|name| !name.is_empty()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(Failure::Refused(anyhow!(
                "HTTP {}: {}",
                status.as_u16(),
                error_message(&body)
            ))),
        }
    };
    let outcome = match tokio::time::timeout(limits.timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure::Unreachable(anyhow!(
            "no complete response within {:?}",
            limits.timeout
        ))),
    };
    outcome.map_err(|failure| {
        failure.context(format!(
            "Docker API at {}: inspecting container {id}",
            socket.display()
        ))
    })
}

/// One `GET` on a new connection to Docker's socket (local: no pool).
async fn get(socket: &Path, path: &str) -> anyhow::Result<(Response<Incoming>, Connection)> {
    let stream = crate::proc_access::check(
        crate::proc_access::What::DockerSocket,
        socket,
        UnixStream::connect(socket).await,
    )
    .context("connecting")?;
    // Runs on the runtime of the task that called: lookups and the follower are its tasks.
    http_get::get(stream, "docker", path, None).await
}

async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Failure> {
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => Err(Failure::Refused(
            anyhow!("response larger than {max} bytes"),
        )),
        Err(err) => Err(Failure::Unreachable(anyhow!("reading the response: {err}"))),
    }
}

/// Docker's `{"message": …}`, else the start of the body.
fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(error) => error.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)])
            .trim()
            .to_owned(),
    }
}

/// Follows the daemon's container events into the cache, for as long as the `Docker` lives:
/// reconnecting after a back-off when the stream fails or ends.
async fn follow(shared: Arc<Shared>) {
    let limits = &shared.limits;
    let mut delay = limits.down_first;
    loop {
        let mut connected = false;
        match follow_once(&shared, &mut connected).await {
            Ok(()) => debug!("the Docker event stream ended"),
            Err(err) => debug!(
                "following the events of the Docker API at {}: {err:#}",
                shared.socket.display()
            ),
        }
        if connected {
            delay = limits.down_first;
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2).min(limits.down_cap);
    }
}

async fn follow_once(shared: &Shared, connected: &mut bool) -> anyhow::Result<()> {
    let timeout = shared.limits.timeout;
    let (response, _connection) = tokio::time::timeout(timeout, get(&shared.socket, EVENTS_PATH))
        .await
        .map_err(|_| anyhow!("no response within {timeout:?}"))??;
    let status = response.status();
    if status != StatusCode::OK {
        let body = read_body(response.into_body(), MAX_EVENT)
            .await
            .unwrap_or_default();
        bail!("HTTP {}: {}", status.as_u16(), error_message(&body));
    }
    *connected = true;
    debug!("following container events at {}", shared.socket.display());
    // Listed once subscribed, so that no container falls between the list and the stream
    // (the daemon keeps the events for the stream meanwhile).
    match list(&shared.socket).await {
        Ok(containers) => shared.learn_list(containers, Instant::now()),
        Err(err) => debug!(
            "listing the containers of the Docker API at {}: {err:#}",
            shared.socket.display()
        ),
    }
    let mut body = response.into_body();
    let mut line = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the event stream")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        // Docker ends each event with a newline; one may span frames.
        let mut rest = &data[..];
        while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
            line.extend_from_slice(&rest[..end]);
            if !line.iter().all(u8::is_ascii_whitespace) {
                shared.learn(&line, Instant::now());
            }
            line.clear();
            rest = &rest[end + 1..];
        }
        line.extend_from_slice(rest);
        if line.len() > MAX_EVENT {
            bail!("an event of over {MAX_EVENT} bytes");
        }
    }
    Ok(())
}

async fn list(socket: &Path) -> anyhow::Result<Vec<Listed>> {
    let work = async {
        let (response, _connection) = get(socket, LIST_PATH).await?;
        let status = response.status();
        let body = read_body(response.into_body(), MAX_LIST)
            .await
            .map_err(Failure::into_error)?;
        if status != StatusCode::OK {
            bail!("HTTP {}: {}", status.as_u16(), error_message(&body));
        }
        serde_json::from_slice(&body).context("response is not a container list")
    };
    tokio::time::timeout(LIST_TIMEOUT, work)
        .await
        .map_err(|_| anyhow!("no complete response within {LIST_TIMEOUT:?}"))?
}
