//! A TCP proxy in front of the emulator that can make it vanish: the way a
//! real outage looks to a client (connections refused, answers lost), while
//! the emulator keeps its state for when it "comes back".

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    /// Forward the `remaining`-th request whose `X-Amz-Target` contains
    /// `target`, lose its answer, and go down: the write happened, the
    /// caller cannot know.
    DownAfter {
        target: String,
        remaining: usize,
    },
}

#[derive(Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    mode: Arc<Mutex<Mode>>,
    upstream: String,
}

impl FaultProxy {
    pub async fn start(upstream_endpoint: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = upstream_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let proxy = Self {
            endpoint: format!("http://{}", listener.local_addr().unwrap()),
            mode: Arc::new(Mutex::new(Mode::Up)),
            upstream,
        };
        let serving = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let proxy = serving.clone();
                tokio::spawn(async move { proxy.serve(client).await });
            }
        });
        proxy
    }

    pub fn up(&self) {
        *self.mode.lock().unwrap() = Mode::Up;
    }

    pub fn down(&self) {
        *self.mode.lock().unwrap() = Mode::Down;
    }

    pub fn is_down(&self) -> bool {
        *self.mode.lock().unwrap() == Mode::Down
    }

    /// Go down in the middle of the next `target` call (after it was applied).
    pub fn down_after(&self, target: &str) {
        *self.mode.lock().unwrap() = Mode::DownAfter {
            target: target.to_owned(),
            remaining: 1,
        };
    }

    /// Returns whether to forward the request and whether to answer it.
    fn decide(&self, target: &str) -> (bool, bool) {
        let mut mode = self.mode.lock().unwrap();
        match &mut *mode {
            Mode::Up => (true, true),
            Mode::Down => (false, false),
            Mode::DownAfter {
                target: wanted,
                remaining,
            } if target.contains(wanted.as_str()) => {
                *remaining -= 1;
                if *remaining == 0 {
                    *mode = Mode::Down;
                    (true, false)
                } else {
                    (true, true)
                }
            }
            Mode::DownAfter { .. } => (true, true),
        }
    }

    async fn serve(&self, mut client: TcpStream) {
        let Some(request) = read_request(&mut client).await else {
            return;
        };
        let (forward, answer) = self.decide(&header(&request, "x-amz-target").unwrap_or_default());
        if !forward {
            return; // dropped: the client sees the connection close
        }
        let Ok(mut upstream) = TcpStream::connect(&self.upstream).await else {
            return;
        };
        if upstream.write_all(&request).await.is_err() {
            return;
        }
        let mut response = Vec::new();
        if upstream.read_to_end(&mut response).await.is_err() {
            return;
        }
        if answer {
            let _ = client.write_all(&response).await;
        }
    }
}

/// One HTTP/1.1 request, rewritten to close the upstream connection after it.
async fn read_request(client: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let read = client.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let length: usize = header(head.as_bytes(), "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < head_end + length {
        let read = client.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let mut rewritten: Vec<u8> = head
        .trim_end()
        .lines()
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|line| format!("{line}\r\n").into_bytes())
        .collect();
    rewritten.extend_from_slice(b"connection: close\r\n\r\n");
    rewritten.extend_from_slice(&buffer[head_end..head_end + length]);
    Some(rewritten)
}

fn header(request: &[u8], name: &str) -> Option<String> {
    let head = String::from_utf8_lossy(request);
    head.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
}
