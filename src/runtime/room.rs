//! One actor per managed chat: strict order within the chat, independence between chats.
//!
//! A room actor takes its chat's messages one at a time (they wait in its own bounded
//! [`queue`], where an edit can still replace a waiting message and a redaction withdraw
//! it, see [`amend`]; the thread and every other chat keep going), runs the turn through the
//! router and the agent's connection, shows that it is working meanwhile, and answers as a
//! reply to the person's message. Every failure ends in a notice in the
//! chat: a person never waits in silence. It speaks only through its chat's [`Surface`]:
//! the same actor serves a Matrix room or any other messenger's chat.
//!
//! Files ([`attachments`]): a file message is fetched into the agent's workspace (`inbox/`)
//! in the same strict order. The caption rule: a file with a caption is a turn of its own
//! (the caption is its text); a file without one waits, acknowledged by a notice, and goes
//! with the same person's next message in the chat. The files the agent posts (`file`
//! events) follow its reply; refused ones get a notice.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Context, Handler, Message};
use actors::{ChildCtx, ChildHandle};
use tracing::Instrument;

pub mod amend;
pub mod attachments;
pub mod latency;
pub mod pace;
pub mod queue;
pub mod reply;
pub mod split;
pub mod story;
pub mod stream;

pub use self::amend::{Amend, Change};
pub use self::attachments::{FileDeps, UserFile};
pub use self::latency::{Arrival, ReplyClock};
use self::queue::RoomQueue;
use self::story::{Outcome, Stories};

use super::agent_conn::RunTurn;
use super::commands::{self, InFlight};
use super::presence;
use super::router::{RouteTable, Router};
use crate::agent::{AgentError, RetryKind, TurnRequest, TurnSender, AUTH_REQUIRED_CODE};
use crate::commands::Parsed;
use crate::crash::{self, CrashPoint};
use crate::journal::{Journal, JournalEntry};
use crate::metrics::{MessageOutcome, Metrics};
use crate::retry::{retry, RetryPolicy};
use crate::store::{RoomRecord, RoomRecordCache, Store, StoreError};
use crate::surface::{
    turn_id_for, AnswerPart, ChatId, MessageId, OutMessage, PersonId, ReplyTo, SendKey, Surface,
    SurfaceError,
};
use crate::texts;

/// How long a message waits behind a running turn before its sender is told it is queued.
pub const QUEUED_NOTICE_AFTER: Duration = Duration::from_secs(10);

/// How often the typing notice is renewed while a turn runs (messengers drop it after a
/// few seconds otherwise).
pub const TYPING_REFRESH: Duration = Duration::from_secs(3);
/// Times a journaled message is resumed by restarting incarnations of its room actor
/// before it is answered with an error notice instead (a poison message).
pub const MAX_RESUMES: u32 = 3;

/// What a room actor needs from the rest of the runtime.
pub struct RoomDeps {
    /// The store.
    pub store: Store,
    /// The router.
    pub router: ChildHandle<Router>,
    /// The agents' routes (what a turn needs of the router, without its mailbox).
    pub routes: RouteTable,
    /// The inbound journal (resume, completion, and the resume count of each message: a
    /// message that keeps killing its room actor, or the whole process, is given up after
    /// [`MAX_RESUMES`]).
    pub journal: Journal,
    /// Message outcomes are counted here.
    pub metrics: Arc<Metrics>,
    /// Each room's recent messages (ids, timings, outcomes) for the ops endpoint.
    pub stories: Arc<Stories>,
    /// Files: the size limit, and the files waiting for their sender's next message.
    pub files: FileDeps,
    /// What the chat commands need.
    pub commands: commands::CommandDeps,
    /// Config `limits.room_queue_max`: messages waiting per chat.
    pub queue_max: usize,
    /// How big a reply may grow, and how a long one is delivered.
    pub replies: crate::config::RepliesConfig,
    /// `[streaming]`: live replies.
    pub streaming: crate::config::StreamingConfig,
    /// How long a stopping room actor may take to finish its turn before it is aborted:
    /// a little under `shutdown.grace_secs` ([`stop_timeout`]), so that nothing of a
    /// stopped runtime outlives its grace period.
    pub stop_timeout: Duration,
}

/// What a room actor is given to finish its turn when the runtime stops: the grace
/// period less [`STOP_MARGIN`] (the rest is for flushing the store), at least
/// [`MIN_STOP_TIMEOUT`].
pub fn stop_timeout(grace: Duration) -> Duration {
    grace.saturating_sub(STOP_MARGIN).max(MIN_STOP_TIMEOUT)
}

/// Part of the grace period kept for what follows the room actors' stop.
pub const STOP_MARGIN: Duration = Duration::from_secs(1);
/// The least a stopping room actor is given.
pub const MIN_STOP_TIMEOUT: Duration = Duration::from_millis(100);

/// A chat as the core speaks to it: its id and its messenger. Cheap to clone.
#[derive(Clone)]
pub struct Chat {
    /// The chat's id on its messenger.
    pub id: ChatId,
    /// Its messenger.
    pub surface: Arc<dyn Surface>,
    /// Its record as last read (shared by the clones: the actor's turns read it through
    /// this, [`Chat::record`]).
    record: Arc<RoomRecordCache>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.surface.name(), self.id)
    }
}

impl Chat {
    /// A chat of `surface`.
    pub fn new(surface: Arc<dyn Surface>, id: ChatId) -> Self {
        Self {
            id,
            surface,
            record: Arc::default(),
        }
    }

    /// Its record in the store, read again only when a room record was written since the
    /// last read ([`Store::room_cached`]).
    pub fn record(&self, store: &Store) -> Result<Option<Arc<RoomRecord>>, StoreError> {
        store.room_cached(self.id.as_str(), &self.record)
    }

    /// Sends `message`, retrying per [`RetryPolicy::SEND`] (its key makes that safe).
    pub async fn send(&self, message: OutMessage) -> Result<MessageId, SurfaceError> {
        retry(&RetryPolicy::SEND, "sending to a chat", || {
            self.surface.send(&self.id, message.clone())
        })
        .await
    }

    /// A notice answering `msg` (deduplicated by its key); true if it was sent (failures are
    /// logged: the caller keeps the message pending).
    pub async fn notice(&self, msg: &UserMessage, text: &str) -> bool {
        let message = OutMessage::notice_to(
            msg.reply_to(),
            text,
            SendKey::answer(&msg.id, AnswerPart::Notice),
        );
        match self.send(message).await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%error, "cannot send a notice to the chat");
                false
            }
        }
    }

    /// A notice of the bot on its own (no reply); failures are logged.
    pub async fn say(&self, text: &str, key: Option<SendKey>) {
        if let Err(error) = self.send(OutMessage::notice(text, key)).await {
            tracing::warn!(chat = ?self, %error, "cannot send a notice to the chat");
        }
    }
}

/// The room actor.
pub struct RoomActor {
    chat: Chat,
    deps: Arc<RoomDeps>,
    /// The messages waiting behind the one being answered.
    queue: RoomQueue,
    /// A message is being answered.
    busy: bool,
    /// Turns started by this incarnation (the one running is the latest).
    turns: u64,
    /// The turn during which the chat was told that messages wait (once per turn).
    told_waiting: Option<u64>,
    /// The timer that tells the first person waiting behind the running turn, if it runs
    /// long ([`QUEUED_NOTICE_AFTER`] after a message first queued behind it); cancelled
    /// when the turn ends.
    waiting_notice: Option<actix::SpawnHandle>,
    /// Asked to stop: it stops once the turn running is answered (the supervisor aborts it
    /// after its shutdown timeout); the messages waiting stay pending in the journal.
    draining: bool,
    /// What this incarnation resumes when it starts (taken by `started`).
    resume: Resume,
    /// Since when nothing has run nor waited here (a passivation asks for an idle period).
    idle_since: std::time::Instant,
    _ctx: ChildCtx,
}

/// What a room actor's incarnation finishes first, of what its chat left pending in the
/// journal (after a crash of the process or of a previous incarnation).
#[derive(Debug)]
pub enum Resume {
    /// Nothing: a chat activated for a message just taken, or just created (what it left
    /// pending before a passivation is resumed by the next start of the process).
    Nothing,
    /// Whatever the journal holds for the chat (a restart after a failure).
    Scan,
    /// These entries, in journal order (start-up read the journal once for every chat).
    Entries(Vec<JournalEntry>),
}

/// Whether the actor is idle, and if so it agrees to be passivated: no turn running, no
/// message waiting, and nothing done for `idle_after`. Answered from the mailbox, after
/// every message handed over before it.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "bool")]
pub struct Passivate {
    /// The idle period asked for (`supervision.room_idle_secs`).
    pub idle_after: Duration,
}

impl RoomActor {
    /// A fresh incarnation for `chat`, resuming as `resume` says.
    pub fn new(chat: Chat, deps: Arc<RoomDeps>, resume: Resume, ctx: ChildCtx) -> Self {
        let queue = RoomQueue::new(deps.queue_max);
        Self {
            chat,
            deps,
            queue,
            busy: false,
            turns: 0,
            told_waiting: None,
            waiting_notice: None,
            draining: false,
            resume,
            idle_since: std::time::Instant::now(),
            _ctx: ctx,
        }
    }

    /// Notes that something ran or arrived now.
    pub(super) fn touch(&mut self) {
        self.idle_since = std::time::Instant::now();
    }
}

impl Handler<Passivate> for RoomActor {
    type Result = bool;

    fn handle(&mut self, ask: Passivate, _ctx: &mut Context<Self>) -> bool {
        !self.busy
            && !self.draining
            && self.queue.is_empty()
            && self.idle_since.elapsed() >= ask.idle_after
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    /// Every incarnation first finishes what its chat left pending in the journal (after a
    /// crash of the process or of a previous incarnation), in journal order: those messages
    /// go first into the queue.
    fn started(&mut self, ctx: &mut Context<Self>) {
        let entries = match std::mem::replace(&mut self.resume, Resume::Nothing) {
            Resume::Nothing => Vec::new(),
            Resume::Entries(entries) => entries,
            Resume::Scan => match self.deps.journal.pending() {
                Ok(entries) => entries
                    .into_iter()
                    .filter(|e| e.room_id == self.chat.id.as_str())
                    .collect(),
                Err(error) => {
                    tracing::error!(chat = ?self.chat, %error, "cannot read the journal to resume");
                    Vec::new()
                }
            },
        };
        for entry in entries {
            self.queue.push_resumed(queue::Queued::Resumed(entry));
        }
        self.pump(ctx);
    }

    /// A stop (shutdown, or the chat's actor being stopped) lets the turn running finish and
    /// its answer go out; nothing new starts (the rest of the runtime is stopping too). The
    /// text messages waiting stay pending in the journal and the next incarnation answers
    /// them; files waiting are dropped, as in a crash (they are not journaled).
    fn stopping(&mut self, _ctx: &mut Context<Self>) -> actix::Running {
        self.draining = true;
        if self.busy {
            return actix::Running::Continue;
        }
        if !self.queue.is_empty() {
            tracing::info!(chat = ?self.chat, waiting = self.queue.len(),
                "stopping; the messages waiting are answered when the chat starts again");
        }
        actix::Running::Stop
    }
}
actors::supervised_actor!(RoomActor);

/// A person's text message in this chat.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct UserMessage {
    /// The message's id (turn ids and send keys derive from it).
    pub id: MessageId,
    /// Who wrote it.
    pub sender: PersonId,
    /// Their display name, if known.
    pub display_name: Option<String>,
    /// The text.
    pub body: String,
    /// When it reached the bot, for the reply latency metrics (`None`: not measured, e.g.
    /// resumed from the journal).
    pub arrival: Option<Arrival>,
}

impl UserMessage {
    /// What an answer to this message replies to.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            message: self.id.clone(),
            sender: self.sender.clone(),
        }
    }
}

impl Handler<UserMessage> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: UserMessage, ctx: &mut Context<Self>) {
        let _span = message_span(&self.chat, msg.id.as_str()).entered();
        tracing::debug!("queued");
        // Strict order: it waits in the queue behind the messages before it.
        self.enqueue(queue::Queued::Text(msg), ctx);
    }
}

/// The span of every log line about one message in its room actor: `msg` is the message's
/// id (the journal's event id), the field that ties the intake's, the room actor's, the agent
/// turn's and the reply's log lines of one message together.
pub fn message_span(chat: &Chat, msg: &str) -> tracing::Span {
    tracing::info_span!("message", room_id = %chat.id, msg = %msg)
}

/// Answers one journal entry left pending by an earlier run or incarnation.
async fn resume_pending(chat: Chat, deps: Arc<RoomDeps>, entry: JournalEntry) {
    let msg = UserMessage {
        id: MessageId::new(entry.event_id.clone()),
        sender: PersonId::new(entry.sender),
        display_name: None,
        body: entry.body,
        arrival: None,
    };
    // Counted durably before the attempt: a message that takes the whole process down is
    // given up after MAX_RESUMES restarts too.
    let resumes = match deps.journal.count_resume(&entry.event_id).await {
        Ok(n) => n,
        Err(error) => {
            tracing::error!(chat = ?chat, event_id = %msg.id, %error,
                "cannot count the resume of a journaled message; resuming it anyway");
            entry.resumes.saturating_add(1)
        }
    };
    tracing::info!(chat = ?chat, event_id = %msg.id, resumes, "resuming a journaled message");
    if resumes > MAX_RESUMES {
        tracing::error!(chat = ?chat, event_id = %msg.id,
            "giving up on a message that keeps failing its chat");
        let story = deps.stories.begin(chat.id.as_str(), msg.id.as_str(), None);
        story.end(Outcome::GivenUp, None);
        chat.notice(&msg, texts::internal_error()).await;
        finish(&deps, &msg).await;
        return;
    }
    process(chat, deps, msg).await;
}

/// Answers one message unless it was answered already, then marks it done (in the
/// message's span, [`message_span`]).
async fn process(chat: Chat, deps: Arc<RoomDeps>, msg: UserMessage) {
    match deps.journal.is_done(msg.id.as_str()) {
        Ok(true) => {
            tracing::debug!("answered already; nothing to do");
            return;
        }
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "cannot read the journal; answering anyway"),
    }
    tracing::debug!("answering");
    if answer(chat, deps.clone(), &msg, Vec::new()).await {
        crash::point(CrashPoint::AfterSend);
        finish(&deps, &msg).await;
    }
}

/// Marks a message answered in the journal.
async fn finish(deps: &RoomDeps, msg: &UserMessage) {
    match deps.journal.complete(msg.id.as_str()).await {
        Ok(()) => tracing::debug!("marked answered in the journal"),
        Err(error) => {
            tracing::error!(%error, event_id = %msg.id, "cannot mark a message answered");
        }
    }
}

/// Runs the turn and answers; true once the person got a reply or a notice (false if
/// even the notice could not be sent: the message stays pending in the journal).
/// The turn's attachments are the files waiting for the sender, then `extra`.
async fn answer(
    chat: Chat,
    deps: Arc<RoomDeps>,
    msg: &UserMessage,
    extra: Vec<crate::agent::Attachment>,
) -> bool {
    let story = deps
        .stories
        .begin(chat.id.as_str(), msg.id.as_str(), msg.arrival);
    let record = match chat.record(&deps.store) {
        Ok(Some(record)) => record,
        Ok(None) => {
            tracing::error!("managed chat without a record in the store");
            story.counted(
                &deps.metrics,
                chat.surface.name(),
                MessageOutcome::InternalError,
            );
            return chat.notice(msg, texts::internal_error()).await;
        }
        Err(error) => {
            tracing::error!(%error, "cannot read the chat's record");
            story.counted(
                &deps.metrics,
                chat.surface.name(),
                MessageOutcome::InternalError,
            );
            return chat.notice(msg, texts::internal_error()).await;
        }
    };
    if record.archived {
        story.end(Outcome::Refused, None);
        return chat.notice(msg, texts::ROOM_ARCHIVED).await;
    }
    match crate::commands::parse(&msg.body) {
        Parsed::Command(command) => {
            story.end(Outcome::Command, None);
            return commands::execute(&chat, &record, &deps, msg, command).await;
        }
        Parsed::Invalid(error) => {
            story.end(Outcome::Refused, None);
            return chat.notice(msg, &error.to_string()).await;
        }
        Parsed::NotACommand => {}
    }
    let route = match deps.routes.get(&record.agent_id) {
        Some(route) => route,
        None => {
            tracing::warn!(agent_id = %record.agent_id, "chat bound to an agent that is not configured");
            story.counted(
                &deps.metrics,
                chat.surface.name(),
                MessageOutcome::StaleAgent,
            );
            return chat.notice(msg, &texts::agent_gone(&record.agent_id)).await;
        }
    };

    // The name shown in every notice of this turn (the card may change meanwhile).
    let agent_name = route.name();
    if route.free_answers {
        commands::answered_by_message(&deps, &chat.id, msg.sender.as_str(), &route.id).await;
    }
    let surface = chat.surface.name();
    let clock = ReplyClock::start(
        &deps.metrics,
        &route.id,
        surface,
        &msg.id,
        msg.arrival,
        Some(story.clone()),
    );
    let mut typing = Typing::new(chat.clone());
    let request = TurnRequest {
        turn_id: turn_id_for(&msg.id),
        sender: TurnSender {
            id: msg.sender.to_string(),
            display_name: msg.display_name.clone(),
        },
        text: msg.body.clone(),
        // A message without an arrival time was not taken by this run's intake: resumed from
        // the journal (it may have taken files before a crash), or made up by the runtime.
        attachments: deps
            .files
            .take(&chat.id, &msg.sender, &msg.id, msg.arrival.is_none(), extra)
            .await,
    };
    let attachments = request.attachments.clone();
    let live = (deps.streaming.enabled && chat.surface.capabilities().edits).then(|| {
        // A turn resumed after a crash finishes the reply it had started.
        let existing = match deps.journal.live_reply(msg.id.as_str()) {
            Ok(existing) => existing.into_iter().map(MessageId::new).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the journal's live reply; posting anew");
                Vec::new()
            }
        };
        stream::LiveReply::start(
            chat.clone(),
            msg,
            &deps.streaming,
            reply::limits_for(&chat, &deps.replies),
            deps.journal.clone(),
            existing,
            clock.clone(),
        )
    });
    let in_flight = Arc::new(InFlight {
        turn_id: request.turn_id.clone(),
        chat_id: record.platform_chat_id.clone(),
        agent_id: route.id.clone(),
        sender: msg.sender.clone(),
    });
    deps.commands
        .inflight
        .lock()
        .insert(chat.id.clone(), in_flight.clone());
    if let Some(clock) = &clock {
        clock.turn_started();
    }
    let (result, streamed) = typing
        .during(async {
            let handed = route
                .conn
                .send(RunTurn {
                    chat_id: record.platform_chat_id.clone(),
                    message: msg.id.clone(),
                    request,
                    live: live.as_ref().map(stream::LiveReply::sender),
                })
                .await;
            // Run here, in this room's context (the connection only hands the turn out).
            let result = match handed {
                Ok(turn) => Ok(turn.await),
                Err(error) => Err(error),
            };
            let streamed = match live {
                Some(live) => live.finish().await,
                None => stream::Streamed::default(),
            };
            (result, streamed)
        })
        .await;
    deps.commands.inflight.lock().remove(&chat.id);
    typing.stop();

    match result {
        Ok(Ok(mut outcome)) => {
            crash::point(CrashPoint::AfterAgent);
            let files = std::mem::take(&mut outcome.files);
            if let Some(confirm) = outcome.confirm.take() {
                let question =
                    commands::ask_for_agent(&deps, &chat.id, msg, &in_flight, route, confirm).await;
                outcome.reply = if outcome.reply.trim().is_empty() {
                    question
                } else {
                    format!("{}\n\n{question}", outcome.reply)
                };
            }
            let text = if outcome.reply.trim().is_empty() && !files.is_empty() {
                texts::files_only_reply(&agent_name, files.len())
            } else if outcome.reply.trim().is_empty() {
                texts::empty_reply(&agent_name)
            } else {
                outcome.reply
            };
            let text = if outcome.truncated {
                reply::with_cut_note(text, &deps.replies)
            } else {
                text
            };
            let delivery = if streamed.messages.is_empty() {
                reply::send_reply(&chat, msg, &agent_name, text, &deps.replies).await
            } else {
                reply::finish_live(&chat, msg, &streamed, &agent_name, text, &deps.replies).await
            };
            match delivery {
                reply::Delivery::Sent => {
                    tracing::debug!(agent = %route.id, "reply sent");
                    story.counted(&deps.metrics, chat.surface.name(), MessageOutcome::Replied);
                    if let Some(clock) = &clock {
                        clock.replied();
                    }
                    attachments::post_turn_files(&chat, &deps, route, msg, &files).await;
                    true
                }
                reply::Delivery::Refused(_) => {
                    // Retrying cannot help: the person is told, and the message is done.
                    story.counted(
                        &deps.metrics,
                        chat.surface.name(),
                        MessageOutcome::InternalError,
                    );
                    chat.notice(msg, &texts::reply_undeliverable(&agent_name))
                        .await
                }
                reply::Delivery::Failed(error) => {
                    tracing::error!(%error, "cannot send the reply; the message stays pending");
                    story.counted(
                        &deps.metrics,
                        chat.surface.name(),
                        MessageOutcome::InternalError,
                    );
                    false
                }
            }
        }
        Ok(Err(error)) if error.is_cancelled() => {
            tracing::info!(agent = %route.id, "turn cancelled");
            story.end(Outcome::Cancelled, None);
            deps.files
                .put_back(&chat.id, &msg.sender, attachments)
                .await;
            // What was said stays, marked as stopped.
            let stopped = texts::STREAM_STOPPED;
            if reply::end_live(&chat, msg, &streamed, &deps.replies, stopped).await {
                return true;
            }
            chat.notice(msg, texts::TURN_CANCELLED).await
        }
        Ok(Err(error)) => {
            tracing::warn!(%error, agent = %route.id, "agent turn failed");
            deps.files
                .put_back(&chat.id, &msg.sender, attachments)
                .await;
            let incomplete = texts::STREAM_INCOMPLETE;
            reply::end_live(&chat, msg, &streamed, &deps.replies, incomplete).await;
            story.turn_failed(&deps.metrics, chat.surface.name(), &error);
            chat.notice(msg, &agent_failure_text(&agent_name, &error))
                .await
        }
        Err(error) => {
            tracing::error!(%error, agent = %route.id, "agent connection unavailable");
            deps.files
                .put_back(&chat.id, &msg.sender, attachments)
                .await;
            let incomplete = texts::STREAM_INCOMPLETE;
            reply::end_live(&chat, msg, &streamed, &deps.replies, incomplete).await;
            story.counted(
                &deps.metrics,
                chat.surface.name(),
                MessageOutcome::AgentUnavailable,
            );
            let text = texts::agent_unreachable(&agent_name, texts::reason::RESTARTING);
            chat.notice(msg, &text).await
        }
    }
}

/// The notice for a failed turn, by kind of failure, in words a person can use.
fn agent_failure_text(agent_name: &str, error: &AgentError) -> String {
    let reason = match error {
        AgentError::Timeout(after) => return texts::agent_timeout(agent_name, after.as_secs()),
        AgentError::TurnTooLong(after) => {
            return texts::agent_turn_too_long(agent_name, after.as_secs())
        }
        AgentError::Unreachable(_) | AgentError::Io(_) => texts::reason::CANNOT_CONNECT.to_owned(),
        AgentError::Busy { status, .. } => texts::reason::busy(*status),
        AgentError::Server { status, .. } => texts::reason::server_error(*status),
        AgentError::Rejected { status, .. } => texts::reason::refused(*status),
        AgentError::Protocol(_) | AgentError::Incomplete => texts::reason::GARBLED.to_owned(),
        AgentError::TurnFailed { code, message } if code == AUTH_REQUIRED_CODE => {
            return texts::agent_needs_auth(agent_name, message)
        }
        AgentError::TurnFailed { code, message } => texts::reason::agent_said(code, message),
        AgentError::Unsupported(what) => return texts::agent_does_not_offer(agent_name, what),
        AgentError::InvalidConfig(_) | AgentError::InvalidChatId(_) => {
            texts::reason::MISCONFIGURED.to_owned()
        }
        AgentError::Store(_) => texts::reason::STORAGE.to_owned(),
    };
    match error.retry_kind() {
        RetryKind::Network | RetryKind::Transient { .. } => {
            texts::agent_unreachable(agent_name, &reason)
        }
        RetryKind::Permanent => texts::agent_error(agent_name, &reason),
    }
}

/// "Typing…" while a turn runs: shown once the turn has run [`presence::TYPING_AFTER`] (a
/// quick answer needs none), then kept on until [`Typing::stop`]; its log lines in the
/// caller's span. A quick turn costs a timer, not a task: the renewing task is spawned only
/// when the notice is due.
struct Typing {
    task: Option<tokio::task::JoinHandle<()>>,
    chat: Chat,
}

impl Typing {
    fn new(chat: Chat) -> Self {
        Self { task: None, chat }
    }

    /// Runs `work`, showing the notice (and renewing it) once `work` has taken
    /// [`presence::TYPING_AFTER`].
    async fn during<F: std::future::Future>(&mut self, work: F) -> F::Output {
        tokio::pin!(work);
        if self.task.is_none() {
            tokio::select! {
                biased;
                out = &mut work => return out,
                () = tokio::time::sleep(presence::TYPING_AFTER) => {}
            }
            let chat = self.chat.clone();
            let renew = async move {
                loop {
                    chat.surface.typing(&chat.id, true).await;
                    tokio::time::sleep(TYPING_REFRESH).await;
                }
            };
            self.task = Some(tokio::spawn(renew.in_current_span()));
        }
        work.await
    }

    /// Stops renewing it and, if it was shown, hides it without holding the answer back by a
    /// round trip.
    fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
            let chat = self.chat;
            let hide = async move { chat.surface.typing(&chat.id, false).await };
            tokio::spawn(hide.in_current_span());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_told_in_words_a_person_can_use() {
        let said = |code: &str, message: &str| AgentError::TurnFailed {
            code: code.to_owned(),
            message: message.to_owned(),
        };
        for (error, want) in [
            (
                said(AUTH_REQUIRED_CODE, "Sign in first."),
                texts::agent_needs_auth("Bot", "Sign in first."),
            ),
            (
                said("failed", "The tool crashed."),
                texts::agent_error(
                    "Bot",
                    &texts::reason::agent_said("failed", "The tool crashed."),
                ),
            ),
            (
                AgentError::Unsupported("!context".to_owned()),
                texts::agent_does_not_offer("Bot", "!context"),
            ),
            (
                AgentError::Incomplete,
                texts::agent_unreachable("Bot", texts::reason::GARBLED),
            ),
        ] {
            assert_eq!(agent_failure_text("Bot", &error), want, "{error:?}");
        }
    }
}
