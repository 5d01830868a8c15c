//! A `kill -9` of the real gateway binary on SQLite: what was flushed stays, at most the
//! unflushed batch is lost, the database is not corrupted, and a restart carries on.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canarist::mock::{MockConfig, MockServer};
use canarist::store::Store;
use futures::StreamExt;

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(config: &std::path::Path) -> (Proc, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_canarist"))
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("CANARIST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    let url = line[line.find("http://").unwrap()..].trim().to_owned();
    (Proc(child), url)
}

async fn send(client: &reqwest::Client, url: &str, n: usize) {
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| async move {
            let r = client
                .post(format!("{url}/v1/chat/completions"))
                .json(
                    &serde_json::json!({"model": "chat", "user": format!("u{i}"),
                    "messages": [{"role": "user", "content": "hello"}]}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        })
        .await;
}

async fn observation_count(db: &std::path::Path) -> u64 {
    let store = Store::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let n = store.count_observations(None).await.unwrap();
    store.close().await;
    n
}

#[tokio::test]
async fn kill_9_loses_at_most_the_unflushed_batch_and_never_corrupts() {
    let mock = MockServer::start(MockConfig::builtin().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("canarist.db");
    let config = dir.path().join("c.yaml");
    std::fs::write(
        &config,
        format!(
            "providers:\n  mock: {{ base_url: \"{}\" }}\nstorage: {{ url: \"sqlite://{}\" }}\n\
             capture: {{ flush_interval: 50ms }}\ndeployments:\n  - slug: chat\n    stable: {{ provider: mock, model: mock-fast }}\n",
            mock.base_url(),
            db.display()
        ),
    )
    .unwrap();
    let client = reqwest::Client::new();

    let (mut gw, url) = start_gateway(&config);
    send(&client, &url, 200).await;
    tokio::time::sleep(Duration::from_millis(500)).await; // well past the flush interval
    send(&client, &url, 50).await;
    gw.0.kill().unwrap(); // SIGKILL: no graceful shutdown, no final flush
    gw.0.wait().unwrap();
    drop(gw);

    let after_kill = observation_count(&db).await;
    assert!(
        after_kill >= 200,
        "flushed observations were lost: {after_kill}"
    );
    assert!(after_kill <= 250, "{after_kill}");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    pool.close().await;

    // A restart on the same file carries on writing.
    let (_gw, url) = start_gateway(&config);
    send(&client, &url, 10).await;
    for _ in 0..200 {
        if observation_count(&db).await >= after_kill + 10 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the restarted gateway did not write new observations");
}
