//! A small Lambda Runtime API (the HTTP interface a function's runtime
//! polls for events): enough to start any function binary, or the Python
//! baseline, hand it events and see when it is ready and when it is done.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Stub {
    events: VecDeque<Value>,
    /// When the runtime first asked for an event: it is initialised.
    first_poll: Option<Instant>,
    responses: Vec<Value>,
    errors: Vec<String>,
    next_request: u64,
}

/// One stub per function process under test.
pub struct RuntimeApi {
    pub address: SocketAddr,
    stub: Arc<Mutex<Stub>>,
    progress: watch::Receiver<usize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn locked(stub: &Mutex<Stub>) -> std::sync::MutexGuard<'_, Stub> {
    match stub.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl RuntimeApi {
    pub async fn start(events: Vec<Value>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let stub = Arc::new(Mutex::new(Stub {
            events: events.into(),
            ..Stub::default()
        }));
        let (progress_tx, progress) = watch::channel(0usize);
        let progress_tx = Arc::new(progress_tx);
        let server_stub = stub.clone();
        let server = tokio::spawn(async move {
            while let Ok((connection, _)) = listener.accept().await {
                let (stub, progress) = (server_stub.clone(), progress_tx.clone());
                tokio::spawn(async move {
                    let _ = serve(connection, stub, progress).await;
                });
            }
        });
        Ok(Self {
            address,
            stub,
            progress,
            server,
        })
    }

    pub fn first_poll(&self) -> Option<Instant> {
        locked(&self.stub).first_poll
    }

    /// Waits until the function has answered (or failed) `count` events.
    pub async fn answered(&mut self, count: usize, limit: Duration) -> io::Result<()> {
        let reached = {
            let wait = self.progress.wait_for(|done| *done >= count);
            matches!(tokio::time::timeout(limit, wait).await, Ok(Ok(_)))
        };
        if reached {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "only {} of {count} events answered in {limit:?}; errors: {:?}",
            *self.progress.borrow(),
            locked(&self.stub).errors.iter().take(3).collect::<Vec<_>>()
        )))
    }

    pub async fn first_polled(&mut self, limit: Duration) -> io::Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.first_poll() {
                return Ok(at);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("the function never asked for an event"));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    pub fn responses(&self) -> Vec<Value> {
        locked(&self.stub).responses.clone()
    }

    pub fn errors(&self) -> Vec<String> {
        locked(&self.stub).errors.clone()
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;
    Ok(Some(Request { method, path, body }))
}

async fn serve(
    connection: TcpStream,
    stub: Arc<Mutex<Stub>>,
    progress: Arc<watch::Sender<usize>>,
) -> io::Result<()> {
    let mut reader = BufReader::new(connection);
    while let Some(request) = read_request(&mut reader).await? {
        let answer = if request.method == "GET" && request.path.ends_with("/invocation/next") {
            next_event(&stub).await
        } else if request.path.ends_with("/response") {
            let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            let mut state = locked(&stub);
            state.responses.push(body);
            let _ = progress.send(state.responses.len() + state.errors.len());
            accepted()
        } else if request.path.ends_with("/error") {
            let mut state = locked(&stub);
            state
                .errors
                .push(String::from_utf8_lossy(&request.body).into_owned());
            let _ = progress.send(state.responses.len() + state.errors.len());
            accepted()
        } else {
            http(404, &[], b"{}")
        };
        reader.get_mut().write_all(&answer).await?;
    }
    Ok(())
}

/// The next event, or (when there are none left) a wait that lasts until
/// the process is stopped, as Lambda freezes an idle function.
async fn next_event(stub: &Mutex<Stub>) -> Vec<u8> {
    let (event, request_id) = {
        let mut state = locked(stub);
        state.first_poll.get_or_insert_with(Instant::now);
        state.next_request += 1;
        (state.events.pop_front(), state.next_request)
    };
    let Some(event) = event else {
        std::future::pending::<()>().await;
        return Vec::new();
    };
    let deadline = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        + 60_000;
    let headers = [
        (
            "Lambda-Runtime-Aws-Request-Id",
            format!("bench-{request_id}"),
        ),
        ("Lambda-Runtime-Deadline-Ms", deadline.to_string()),
        (
            "Lambda-Runtime-Invoked-Function-Arn",
            "arn:aws:lambda:us-east-1:000000000000:function:bench".to_owned(),
        ),
        (
            "Lambda-Runtime-Trace-Id",
            format!("Root=1-00000000-{request_id:024x};Sampled=0"),
        ),
    ];
    http(200, &headers, event.to_string().as_bytes())
}

fn accepted() -> Vec<u8> {
    http(202, &[], b"{\"status\":\"OK\"}")
}

fn http(status: u16, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}
