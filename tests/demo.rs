//! `graywatch demo` end to end: the daemon on port 0, the built-in traffic over HTTP, the
//! injected slow instance found by the peer detectors, and its alert resolved after healing.

use std::time::Duration;

use graywatch::demo::{self, DemoEvent, DemoOptions};
use tokio::sync::{mpsc, oneshot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demos_slow_instance_fires_an_alert_that_resolves_after_healing() {
    let options = DemoOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        fault_after: Duration::from_secs(3),
        fault_for: Duration::from_secs(40),
        traffic: true,
        seed: 11,
    };
    let (tx, mut rx) = mpsc::channel(256);
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let running = tokio::spawn(demo::run(
        options,
        async move {
            let _ = stop_rx.await;
        },
        tx,
    ));

    // Fault 3 s in, fire_after 15 s, healed at 43 s, clear over the last 10 s and then for
    // resolve_after (30 s): about 85 s; the deadline leaves room for a slow machine.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    let mut seen: Vec<DemoEvent> = Vec::new();
    let mut fired = None;
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no resolved alert within the deadline; saw {seen:#?}"))
            .expect("the demo reports until it is stopped");
        match &event {
            DemoEvent::Listening { base } => assert!(base.starts_with("http://127.0.0.1:")),
            DemoEvent::AlertFired(a) => {
                assert!(
                    seen.iter().any(|e| matches!(e, DemoEvent::FaultStarted(_))),
                    "no alert before the fault: {a:?}"
                );
                assert_eq!(
                    (a.dependency.as_str(), a.instance.as_deref()),
                    ("inventory-service", Some("inventory-2")),
                    "the alert names the slow instance: {a:?}"
                );
                assert!(fired.is_none(), "one alert: {a:?} after {fired:?}");
                fired = Some(a.id);
            }
            DemoEvent::AlertResolved(a) => {
                assert_eq!(Some(a.id), fired, "{a:?}");
                assert!(
                    seen.iter().any(|e| matches!(e, DemoEvent::FaultHealed(_))),
                    "resolved only after healing"
                );
                break;
            }
            DemoEvent::FaultStarted(_) | DemoEvent::FaultHealed(_) => {}
        }
        seen.push(event);
    }
    assert!(matches!(seen[0], DemoEvent::Listening { .. }));
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the demo stops within 30 s")
        .expect("the demo task does not panic")
        .expect("the demo stops without an error");
}
