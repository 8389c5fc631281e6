//! Which emulator the tests talk to, in this order:
//!
//! 1. `AWS_ENDPOINT_URL` when set (`make test` sets it to the emulator it
//!    started, or to a LocalStack already running on 4566);
//! 2. a LocalStack container through `testcontainers`, where a Docker
//!    engine answers;
//! 3. otherwise the faithful moto launcher (`scripts/emulator.py`) from the
//!    repository's `.venv`, started here on a free port.
//!
//! Each test process starts at most one emulator and it ends with the process.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers_modules::localstack::LocalStack;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt};
use tokio::sync::OnceCell;

/// Keeps whatever was started alive for the test process.
#[allow(dead_code)]
enum Started {
    External,
    Container(Box<ContainerAsync<LocalStack>>),
    Moto(MotoProcess),
}

struct MotoProcess(Child);

impl Drop for MotoProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

static EMULATOR: OnceCell<(String, Started)> = OnceCell::const_new();

pub async fn endpoint() -> String {
    let (url, _) = EMULATOR.get_or_init(start).await;
    url.clone()
}

async fn start() -> (String, Started) {
    if let Ok(url) = std::env::var("AWS_ENDPOINT_URL") {
        return (url, Started::External);
    }
    if docker_answers() {
        let container = LocalStack::default()
            .with_env_var("SERVICES", "dynamodb,dynamodbstreams,sqs,sns")
            .start()
            .await
            .expect("starting a LocalStack container");
        let port = container
            .get_host_port_ipv4(4566)
            .await
            .expect("LocalStack's port");
        return (
            format!("http://127.0.0.1:{port}"),
            Started::Container(Box::new(container)),
        );
    }
    let (url, process) = start_moto();
    (url, Started::Moto(process))
}

fn docker_answers() -> bool {
    if std::env::var_os("DOCKER_HOST").is_some() {
        return true;
    }
    std::os::unix::net::UnixStream::connect("/var/run/docker.sock").is_ok()
}

fn start_moto() -> (String, MotoProcess) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "no AWS_ENDPOINT_URL, no Docker engine and no .venv: run `make test` (it installs the emulator)"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(python)
        .arg(root.join("scripts/emulator.py"))
        .args(["--port", &port.to_string(), "--exit-with-parent"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting scripts/emulator.py");
    let process = MotoProcess(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the emulator did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (format!("http://127.0.0.1:{port}"), process)
}
