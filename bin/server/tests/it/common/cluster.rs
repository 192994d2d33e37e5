//! Several telcall instances in one test process, sharing one PostgreSQL database (a fresh
//! one per test) and one Redis (`TEST_REDIS_URL`, under a key prefix unique to the test), as
//! instances behind a load balancer share them.

use super::pg::TestDb;
use super::{TestApp, TestAppBuilder};

/// The Redis every multi-instance test uses.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").expect("set TEST_REDIS_URL, e.g. redis://127.0.0.1:6379")
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("telcall-test:{}:", uuid::Uuid::new_v4().simple())
}

/// Running instances on one database and one Redis.
pub struct Cluster {
    /// The instances, in start order.
    pub apps: Vec<TestApp>,
    /// Their shared Redis key prefix.
    pub prefix: String,
    pub db: TestDb,
}

impl Cluster {
    /// `n` instances, each built from `builder()` plus the shared database and Redis. The
    /// first applies the migrations; the others start on the migrated database.
    pub async fn spawn(n: usize, builder: impl Fn() -> TestAppBuilder) -> Self {
        let db = TestDb::create().await;
        let prefix = unique_prefix();
        let mut apps = Vec::with_capacity(n);
        for _ in 0..n {
            apps.push(
                builder()
                    .database_url(&db.url())
                    .env("REDIS_URL", &redis_url())
                    .env("REDIS_KEY_PREFIX", &prefix)
                    .spawn()
                    .await,
            );
        }
        Self { apps, prefix, db }
    }

    /// Two instances with the default test settings.
    pub async fn pair() -> Self {
        Self::spawn(2, TestAppBuilder::default).await
    }
}

/// A TCP proxy in front of the test Redis that a test can cut and restore: an instance
/// whose `REDIS_URL` points here loses Redis (every connection dropped, new ones refused)
/// while the others keep it.
pub struct RedisProxy {
    /// `redis://` URL of the proxy.
    pub url: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl RedisProxy {
    /// A proxy to `TEST_REDIS_URL`'s host and port, passing traffic.
    pub async fn start() -> Self {
        use std::sync::atomic::Ordering;
        let real = redis_url();
        let authority = real
            .trim_start_matches("redis://")
            .split('/')
            .next()
            .unwrap()
            .rsplit('@')
            .next()
            .unwrap()
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (up, links) = (up.clone(), links.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&authority).await else {
                        continue;
                    };
                    let link = tokio::spawn(async move {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    });
                    links.lock().unwrap().push(link.abort_handle());
                }
            }
        });
        Self {
            url,
            up,
            links,
            accept,
        }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Passes traffic again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
