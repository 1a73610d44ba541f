//! Supervision behaviour, end to end on a real actix System.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message};
use actors::testing::{wait_until, EventProbe};
use actors::{
    ActorId, ActorState, ChildCtx, ChildSpec, EventKind, ExitReason, Registry, RestartConfig,
    RestartPolicy, SendError, Supervisor, SupervisorConfig, SupervisorHandle,
};

const WAIT: Duration = Duration::from_secs(10);

/// A counter actor: its state starts at zero on every incarnation.
struct Counter {
    count: u64,
    ctx: ChildCtx,
}

impl Actor for Counter {
    type Context = Context<Self>;
}
actors::supervised_actor!(Counter);

/// Adds one and returns the new count.
#[derive(Message, Clone)]
#[rtype(result = "u64")]
struct Incr;

impl Handler<Incr> for Counter {
    type Result = u64;
    fn handle(&mut self, _: Incr, _: &mut Context<Self>) -> u64 {
        self.count += 1;
        self.count
    }
}

/// Panics in the handler (a bug in the actor).
#[derive(Message)]
#[rtype(result = "()")]
struct Crash;

impl Handler<Crash> for Counter {
    type Result = ();
    fn handle(&mut self, _: Crash, _: &mut Context<Self>) {
        panic!("counter crashed on purpose");
    }
}

/// Stops normally, or with an error.
#[derive(Message)]
#[rtype(result = "()")]
struct Quit {
    error: Option<&'static str>,
}

impl Handler<Quit> for Counter {
    type Result = ();
    fn handle(&mut self, msg: Quit, ctx: &mut Context<Self>) {
        match msg.error {
            Some(reason) => self.ctx.fail(ctx, reason),
            None => actix::ActorContext::stop(ctx),
        }
    }
}

/// Returns the incarnation that handled it.
#[derive(Message)]
#[rtype(result = "u64")]
struct WhoAmI;

impl Handler<WhoAmI> for Counter {
    type Result = u64;
    fn handle(&mut self, _: WhoAmI, _: &mut Context<Self>) -> u64 {
        self.ctx.incarnation()
    }
}

fn fast_restarts() -> RestartConfig {
    RestartConfig {
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        jitter: 0.0,
        max_restarts: 100,
        period: Duration::from_secs(60),
    }
}

fn root(restart: RestartConfig) -> SupervisorHandle {
    Supervisor::start_root(
        SupervisorConfig {
            restart,
            ..Default::default()
        },
        Registry::new(),
    )
}

fn counter_spec(id: &ActorId) -> ChildSpec<Counter> {
    ChildSpec::new(id.clone(), |ctx| Counter { count: 0, ctx })
}

#[actix_rt::test]
async fn handler_panic_restarts_child_with_fresh_state_and_siblings_keep_serving() {
    let sup = root(fast_restarts());
    let mut probe = EventProbe::new(sup.registry());
    let a_id = ActorId::new("room", "a");
    let a = sup.start_child(counter_spec(&a_id)).await.unwrap();
    let b = sup
        .start_child(counter_spec(&ActorId::new("room", "b")))
        .await
        .unwrap();
    assert_eq!(a.send(Incr).await, Ok(1));
    assert_eq!(a.send(Incr).await, Ok(2));
    assert_eq!(b.send(Incr).await, Ok(1));

    // The caller of the crashing message gets an error, not a hang.
    let err = a.send(Crash).await.unwrap_err();
    assert_eq!(err, SendError::Closed { id: a_id.clone() });

    let exit = probe
        .wait_for_actor(&a_id, WAIT, |k| matches!(k, EventKind::Exited { .. }))
        .await
        .unwrap();
    match exit {
        EventKind::Exited {
            reason: ExitReason::Panic(m),
            incarnation,
        } => {
            assert_eq!(incarnation, 1);
            assert!(m.contains("counter crashed on purpose"), "{m}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // The sibling serves meanwhile.
    assert_eq!(b.send(Incr).await, Ok(2));

    probe
        .wait_for_actor(&a_id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 2 })
        })
        .await
        .unwrap();
    // The same handle reaches the new incarnation, whose state is fresh.
    assert_eq!(a.send(WhoAmI).await, Ok(2));
    assert_eq!(a.send(Incr).await, Ok(1));
    let health = a.health();
    assert_eq!(health.restarts, 1);
    assert_eq!(health.state, ActorState::Running);
    let failure = health.last_failure.expect("failure recorded");
    assert!(matches!(failure.reason, ExitReason::Panic(ref m) if m.contains("on purpose")));
}

#[actix_rt::test]
async fn panic_in_started_is_seen_and_retried() {
    struct BadStart {
        attempts: Arc<AtomicU32>,
    }
    impl Actor for BadStart {
        type Context = Context<Self>;
        fn started(&mut self, _: &mut Context<Self>) {
            if self.attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                panic!("cannot start yet");
            }
        }
    }
    actors::supervised_actor!(BadStart);

    let sup = root(fast_restarts());
    let mut probe = EventProbe::new(sup.registry());
    let id = ActorId::singleton("bad");
    let attempts = Arc::new(AtomicU32::new(0));
    let a2 = attempts.clone();
    let h = sup
        .start_child(ChildSpec::new(id.clone(), move |_| BadStart {
            attempts: a2.clone(),
        }))
        .await
        .unwrap();
    probe
        .wait_for_actor(&id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 3 })
        })
        .await
        .unwrap();
    let panics = probe
        .seen
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Exited { reason: ExitReason::Panic(m), .. } if m == "cannot start yet"))
        .count();
    assert_eq!(panics, 2);
    assert_eq!(h.health().restarts, 2);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[actix_rt::test]
async fn exit_reasons_follow_the_policy_table() {
    let sup = root(fast_restarts());
    let mut probe = EventProbe::new(sup.registry());

    // Transient: a normal stop is final; an error stop restarts.
    let t_id = ActorId::new("t", "1");
    let t = sup
        .start_child(counter_spec(&t_id).policy(RestartPolicy::Transient))
        .await
        .unwrap();
    t.send(Quit {
        error: Some("bad input"),
    })
    .await
    .ok();
    let ev = probe
        .wait_for_actor(&t_id, WAIT, |k| matches!(k, EventKind::Exited { .. }))
        .await
        .unwrap();
    assert_eq!(
        ev,
        EventKind::Exited {
            incarnation: 1,
            reason: ExitReason::Error("bad input".into())
        }
    );
    probe
        .wait_for_actor(&t_id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 2 })
        })
        .await
        .unwrap();
    t.send(Quit { error: None }).await.ok();
    probe
        .wait_for_actor(&t_id, WAIT, |k| matches!(k, EventKind::Removed))
        .await
        .unwrap();
    assert_eq!(t.state(), ActorState::Stopped);
    assert!(matches!(
        t.send(Incr).await,
        Err(SendError::Unavailable {
            state: ActorState::Stopped,
            ..
        })
    ));
    assert!(sup.registry().get(&t_id).is_none());

    // Temporary: even a panic is final.
    let tmp_id = ActorId::new("tmp", "1");
    let tmp = sup
        .start_child(counter_spec(&tmp_id).policy(RestartPolicy::Temporary))
        .await
        .unwrap();
    tmp.send(Crash).await.ok();
    probe
        .wait_for_actor(&tmp_id, WAIT, |k| matches!(k, EventKind::Removed))
        .await
        .unwrap();

    // Permanent: a normal stop restarts.
    let p_id = ActorId::new("p", "1");
    let p = sup.start_child(counter_spec(&p_id)).await.unwrap();
    p.send(Quit { error: None }).await.ok();
    probe
        .wait_for_actor(&p_id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 2 })
        })
        .await
        .unwrap();
    assert_eq!(p.send(WhoAmI).await, Ok(2));
}

#[actix_rt::test]
async fn exceeding_intensity_marks_child_failed_and_reports_it() {
    let sup = root(RestartConfig {
        max_restarts: 3,
        ..fast_restarts()
    });
    let mut probe = EventProbe::new(sup.registry());
    let id = ActorId::new("room", "flappy");
    let h = sup.start_child(counter_spec(&id)).await.unwrap();
    let sibling = sup
        .start_child(counter_spec(&ActorId::new("room", "calm")))
        .await
        .unwrap();
    for incarnation in 1..=4u64 {
        wait_until("incarnation up", WAIT, || {
            h.health().incarnation == incarnation && h.addr().is_some()
        })
        .await
        .unwrap();
        let _ = h.send(Crash).await;
    }
    let ev = probe
        .wait_for_actor(&id, WAIT, |k| matches!(k, EventKind::GaveUp { .. }))
        .await
        .unwrap();
    assert_eq!(
        ev,
        EventKind::GaveUp {
            restarts_in_period: 3
        }
    );
    assert_eq!(h.state(), ActorState::Failed);
    assert!(matches!(
        h.send(Incr).await,
        Err(SendError::Unavailable {
            state: ActorState::Failed,
            ..
        })
    ));
    let health = sup.registry().get(&id).expect("failed child stays visible");
    assert_eq!(health.state, ActorState::Failed);
    assert_eq!(health.restarts, 3);
    assert_eq!(sibling.send(Incr).await, Ok(1), "siblings unaffected");
    // Removing the failed child frees its id for a fresh start.
    sup.stop_child(&id).await.unwrap();
    assert!(sup.registry().get(&id).is_none());
    let again = sup.start_child(counter_spec(&id)).await.unwrap();
    assert_eq!(again.send(Incr).await, Ok(1));
}

#[actix_rt::test]
async fn backoff_sequence_under_paused_time() {
    tokio::time::pause();
    let restart = RestartConfig {
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(1000),
        jitter: 0.0,
        max_restarts: 10,
        period: Duration::from_secs(3600),
    };
    let sup = root(restart);
    let mut probe = EventProbe::new(sup.registry());
    let id = ActorId::singleton("crashy");
    let h = sup.start_child(counter_spec(&id)).await.unwrap();
    let mut delays = Vec::new();
    let mut gaps = Vec::new();
    probe
        .wait_for_actor(&id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 1 })
        })
        .await
        .unwrap();
    for _ in 1..=6u64 {
        let _ = h.send(Crash).await;
        let crashed_at = tokio::time::Instant::now();
        match probe
            .wait_for_actor(&id, WAIT, |k| matches!(k, EventKind::Restarting { .. }))
            .await
            .unwrap()
        {
            EventKind::Restarting { delay, .. } => delays.push(delay.as_millis()),
            other => panic!("{other:?}"),
        }
        probe
            .wait_for_actor(&id, WAIT, |k| matches!(k, EventKind::Started { .. }))
            .await
            .unwrap();
        gaps.push(crashed_at.elapsed().as_millis());
    }
    assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    // The virtual clock moved by the backoff, plus at most the timer wheel's 1 ms
    // rounding (no hidden extra waits).
    for (gap, delay) in gaps.iter().zip(&delays) {
        assert!(
            *gap >= *delay && *gap <= *delay + 1,
            "gap {gap} ms for delay {delay} ms"
        );
    }
}

#[cfg(feature = "fault-injection")]
mod faults {
    use super::*;
    use actors::{Fault, FaultTarget};

    #[actix_rt::test]
    async fn a_fault_aimed_at_one_id_hits_only_that_actor() {
        let sup = root(fast_restarts());
        let mut probe = EventProbe::new(sup.registry());
        let ids: Vec<ActorId> = (0..5)
            .map(|i| ActorId::new("room", &i.to_string()))
            .collect();
        let mut handles = Vec::new();
        for id in &ids {
            handles.push(sup.start_child(counter_spec(id)).await.unwrap());
        }
        let target = ids[2].clone();
        let _guard = sup.registry().faults().inject(
            FaultTarget::Id(target.clone()),
            Fault::Panic {
                nth: 2,
                message_type: Some("Incr".into()),
            },
        );
        for (i, h) in handles.iter().enumerate() {
            assert_eq!(h.send(Incr).await, Ok(1), "actor {i}");
        }
        for (i, h) in handles.iter().enumerate() {
            let got = h.send(Incr).await;
            if i == 2 {
                assert!(matches!(got, Err(SendError::Closed { .. })), "{got:?}");
            } else {
                assert_eq!(got, Ok(2), "actor {i}");
            }
        }
        probe
            .wait_for_actor(&target, WAIT, |k| {
                matches!(k, EventKind::Started { incarnation: 2 })
            })
            .await
            .unwrap();
        for (i, h) in handles.iter().enumerate() {
            let restarts = h.health().restarts;
            assert_eq!(restarts, u32::from(i == 2), "actor {i}");
        }
        let panic_exits: Vec<_> = probe
            .seen
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Exited { .. }))
            .map(|e| e.id.clone())
            .collect();
        assert_eq!(panic_exits, vec![target]);
    }

    #[actix_rt::test]
    async fn kind_faults_error_stop_hang_and_guard_removal() {
        let sup = root(fast_restarts());
        let room = sup
            .start_child(counter_spec(&ActorId::new("room", "x")))
            .await
            .unwrap();
        let agent = sup
            .start_child(counter_spec(&ActorId::new("agent", "x")))
            .await
            .unwrap();
        let faults = sup.registry().faults().clone();

        let g = faults.inject(FaultTarget::Kind("room".into()), Fault::ReturnError);
        assert!(matches!(
            room.send(Incr).await,
            Err(SendError::Closed { .. })
        ));
        assert_eq!(agent.send(Incr).await, Ok(1));
        drop(g);
        assert_eq!(
            room.send(Incr).await,
            Ok(1),
            "the error fault did not break the actor"
        );

        let g = faults.inject(FaultTarget::Kind("room".into()), Fault::Hang);
        let hung = room.send_timeout(Incr, Duration::from_millis(50)).await;
        assert!(matches!(hung, Err(SendError::Timeout { .. })), "{hung:?}");
        drop(g);
        assert_eq!(room.send(Incr).await, Ok(2));

        let mut probe = EventProbe::new(sup.registry());
        let _g = faults.inject(FaultTarget::Id(room.id().clone()), Fault::Stop);
        assert!(room.send(Incr).await.is_err());
        let ev = probe
            .wait_for_actor(room.id(), WAIT, |k| matches!(k, EventKind::Exited { .. }))
            .await
            .unwrap();
        assert_eq!(
            ev,
            EventKind::Exited {
                incarnation: 1,
                reason: ExitReason::Normal
            }
        );
    }

    #[actix_rt::test]
    async fn delay_fault_is_async_and_other_actors_keep_running() {
        tokio::time::pause();
        let sup = root(fast_restarts());
        let slow = sup
            .start_child(counter_spec(&ActorId::new("room", "slow")))
            .await
            .unwrap();
        let fast = sup
            .start_child(counter_spec(&ActorId::new("room", "fast")))
            .await
            .unwrap();
        let _g = sup.registry().faults().inject(
            FaultTarget::Id(slow.id().clone()),
            Fault::Delay(Duration::from_secs(30)),
        );
        let started = tokio::time::Instant::now();
        let slow_reply = tokio::spawn({
            let slow = slow.clone();
            async move { slow.send(Incr).await }
        });
        // Same thread, same arbiter: the fast actor answers while the slow one waits.
        assert_eq!(fast.send(Incr).await, Ok(1));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(slow_reply.await.unwrap(), Ok(1));
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    #[actix_rt::test]
    async fn fail_start_n_times_then_runs() {
        let sup = root(fast_restarts());
        let mut probe = EventProbe::new(sup.registry());
        let id = ActorId::new("agent", "flaky");
        let _g = sup
            .registry()
            .faults()
            .inject(FaultTarget::Id(id.clone()), Fault::FailStart { times: 3 });
        let h = sup.start_child(counter_spec(&id)).await.unwrap();
        probe
            .wait_for_actor(&id, WAIT, |k| matches!(k, EventKind::Started { .. }))
            .await
            .unwrap();
        assert_eq!(h.health().restarts, 3);
        assert_eq!(h.health().incarnation, 4);
        assert_eq!(h.send(Incr).await, Ok(1));
    }

    #[actix_rt::test]
    async fn failing_start_does_not_starve_a_timer_on_the_same_arbiter() {
        struct Ticker(Arc<AtomicUsize>);
        impl Actor for Ticker {
            type Context = Context<Self>;
            fn started(&mut self, ctx: &mut Context<Self>) {
                ctx.run_interval(Duration::from_millis(5), |act, _| {
                    act.0.fetch_add(1, Ordering::SeqCst);
                });
            }
        }
        let ticks = Arc::new(AtomicUsize::new(0));
        let _ticker = Ticker(ticks.clone()).start();
        let sup = root(RestartConfig {
            backoff_min: Duration::ZERO,
            backoff_max: Duration::ZERO,
            max_restarts: u32::MAX,
            ..fast_restarts()
        });
        let id = ActorId::singleton("doomed");
        let _g = sup.registry().faults().inject(
            FaultTarget::Id(id.clone()),
            Fault::FailStart { times: u32::MAX },
        );
        let h = sup.start_child(counter_spec(&id)).await.unwrap();
        // While the child crash-loops with zero backoff, the timer keeps ticking.
        wait_until("20 ticks during the crash loop", WAIT, || {
            ticks.load(Ordering::SeqCst) >= 20
        })
        .await
        .unwrap();
        assert!(
            h.health().restarts > 20,
            "the child really was crash-looping"
        );
    }
}

#[actix_rt::test]
async fn ten_thousand_children_start_and_stop() {
    const N: usize = 10_000;
    let sup = root(fast_restarts());
    let mut handles = Vec::with_capacity(N);
    for i in 0..N {
        handles.push(
            sup.start_child(counter_spec(&ActorId::new("room", &i.to_string())))
                .await
                .unwrap(),
        );
    }
    assert_eq!(sup.registry().len(), N);
    for h in handles.iter().step_by(97) {
        assert_eq!(h.send(Incr).await, Ok(1));
    }
    wait_until("all running", WAIT, || {
        sup.registry()
            .counts()
            .get(&("room".to_owned(), ActorState::Running))
            == Some(&N)
    })
    .await
    .unwrap();
    for h in &handles {
        sup.stop_child(h.id()).await.unwrap();
    }
    assert!(sup.registry().is_empty());
    assert!(handles.iter().all(|h| h.state() == ActorState::Stopped));
}

#[actix_rt::test]
async fn registry_counts_match_what_happened() {
    let sup = root(fast_restarts());
    let mut probe = EventProbe::new(sup.registry());
    let id = ActorId::new("room", "counted");
    let h = sup.start_child(counter_spec(&id)).await.unwrap();
    for _ in 0..7 {
        h.send(Incr).await.unwrap();
    }
    h.tell(Incr).unwrap();
    h.send(WhoAmI).await.unwrap();
    let health = h.health();
    assert_eq!(health.handled, 9);
    assert_eq!(health.mailbox_depth, 0);
    assert!(health.last_activity.is_some());
    assert_eq!(health.restarts, 0);
    assert!(health.last_failure.is_none());

    let _ = h.send(Crash).await;
    probe
        .wait_for_actor(&id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 2 })
        })
        .await
        .unwrap();
    let health = sup.registry().get(&id).unwrap();
    assert_eq!(health.handled, 10);
    assert_eq!(health.restarts, 1);
    assert_eq!(health.incarnation, 2);
    assert_eq!(health.mailbox_depth, 0);
    let snapshot = sup.registry().snapshot();
    assert_eq!(snapshot.len(), 1);
    assert_eq!(snapshot[0].id, id);
}

#[actix_rt::test]
async fn queued_messages_of_a_dying_mailbox_get_errors_promptly() {
    let sup = root(RestartConfig {
        backoff_min: Duration::from_secs(5),
        backoff_max: Duration::from_secs(5),
        ..fast_restarts()
    });
    let h = sup
        .start_child(counter_spec(&ActorId::new("room", "q")))
        .await
        .unwrap();
    let crash = h.send(Crash);
    let queued: Vec<_> = (0..5).map(|_| h.send(Incr)).collect();
    let (crash, queued) = tokio::join!(crash, futures_util::future::join_all(queued));
    assert!(crash.is_err());
    for r in queued {
        assert!(matches!(r, Err(SendError::Closed { .. })), "{r:?}");
    }
    // While it backs off, sends are refused at once.
    wait_until("backing off", WAIT, || h.state() == ActorState::BackingOff)
        .await
        .unwrap();
    assert!(matches!(
        h.send(Incr).await,
        Err(SendError::Unavailable {
            state: ActorState::BackingOff,
            ..
        })
    ));
    let health = h.health();
    assert_eq!(health.lost, 5);
    assert_eq!(health.mailbox_depth, 0);
}

#[actix_rt::test]
async fn redelivery_only_where_declared_safe() {
    let sup = root(RestartConfig {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(20),
        ..fast_restarts()
    });
    let safe = sup
        .start_child(counter_spec(&ActorId::new("room", "safe")).redeliver(true))
        .await
        .unwrap();
    let unsafe_ = sup
        .start_child(
            counter_spec(&ActorId::new("room", "unsafe")).restart(RestartConfig {
                backoff_min: Duration::from_secs(60),
                backoff_max: Duration::from_secs(60),
                ..fast_restarts()
            }),
        )
        .await
        .unwrap();
    let _ = safe.send(Crash).await;
    let _ = unsafe_.send(Crash).await;
    // The safe child's message waits for the next incarnation and is handled there.
    assert_eq!(safe.send_redelivering(Incr, WAIT).await, Ok(1));
    assert_eq!(safe.health().incarnation, 2);
    // The other one refuses at once while it is down.
    assert!(matches!(
        unsafe_.send_redelivering(Incr, WAIT).await,
        Err(SendError::Unavailable { .. })
    ));
}

#[actix_rt::test]
async fn stop_aborts_an_actor_that_ignores_its_timeout() {
    struct Stubborn;
    impl Actor for Stubborn {
        type Context = Context<Self>;
        fn stopping(&mut self, _: &mut Context<Self>) -> actix::Running {
            actix::Running::Continue
        }
    }
    actors::supervised_actor!(Stubborn);
    let sup = root(fast_restarts());
    let mut probe = EventProbe::new(sup.registry());
    let id = ActorId::singleton("stubborn");
    sup.start_child(
        ChildSpec::new(id.clone(), |_| Stubborn).shutdown_timeout(Duration::from_millis(50)),
    )
    .await
    .unwrap();
    sup.stop_child(&id).await.unwrap();
    let ev = probe
        .wait_for_actor(&id, WAIT, |k| matches!(k, EventKind::Exited { .. }))
        .await
        .unwrap();
    assert_eq!(
        ev,
        EventKind::Exited {
            incarnation: 1,
            reason: ExitReason::Killed
        }
    );
}

#[actix_rt::test]
async fn nested_supervisor_escalates_when_a_child_gives_up() {
    let registry = Registry::new();
    let top = Supervisor::start_root(
        SupervisorConfig {
            restart: fast_restarts(),
            ..Default::default()
        },
        registry.clone(),
    );
    let mut probe = EventProbe::new(&registry);
    let rooms_id = ActorId::singleton("rooms");
    let reg2 = registry.clone();
    let rooms = top
        .start_child(ChildSpec::new(rooms_id.clone(), move |ctx| {
            Supervisor::nested(
                SupervisorConfig {
                    restart: RestartConfig {
                        max_restarts: 1,
                        ..fast_restarts()
                    },
                    ..Default::default()
                },
                reg2.clone(),
                ctx,
            )
        }))
        .await
        .unwrap();
    let inner = SupervisorHandle::from_addr(rooms.addr().unwrap(), registry.clone());
    let child_id = ActorId::new("room", "doomed");
    let child = inner
        .start_child(counter_spec(&child_id).escalate_on_give_up(true))
        .await
        .unwrap();
    let _ = child.send(Crash).await;
    probe
        .wait_for_actor(&child_id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 2 })
        })
        .await
        .unwrap();
    let _ = child.send(Crash).await;
    probe
        .wait_for_actor(&child_id, WAIT, |k| matches!(k, EventKind::GaveUp { .. }))
        .await
        .unwrap();
    let ev = probe
        .wait_for_actor(&rooms_id, WAIT, |k| matches!(k, EventKind::Exited { .. }))
        .await
        .unwrap();
    assert!(
        matches!(&ev, EventKind::Exited { reason: ExitReason::Error(m), .. } if m.contains("room:doomed")),
        "{ev:?}"
    );
    // The parent restarted the nested supervisor (fresh, without the failed child).
    probe
        .wait_for_actor(&rooms_id, WAIT, |k| {
            matches!(k, EventKind::Started { incarnation: 2 })
        })
        .await
        .unwrap();
    wait_until("failed child cleaned up", WAIT, || {
        registry.get(&child_id).is_none()
    })
    .await
    .unwrap();
}
