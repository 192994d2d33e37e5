//! Loopback-only networking: target parsing, source addresses spread over 127.0.0.0/8,
//! and a small HTTP/1.1 client on hyper for setup requests and request loops.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// Parses `http://127.x.y.z:port` (or `http://localhost:port`) and refuses any address that
/// is not IPv4 loopback: the load generator never sends traffic off this machine.
pub fn parse_target(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("ws://"))
        .unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or_default();
    let (host, port) = hostport
        .rsplit_once(':')
        .with_context(|| format!("{url:?}: the target needs an explicit port"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("{url:?}: {port:?} is not a port"))?;
    let ip: Ipv4Addr = if host.eq_ignore_ascii_case("localhost") {
        Ipv4Addr::LOCALHOST
    } else {
        host.parse().with_context(|| {
            format!("{url:?}: the target must be an IPv4 loopback address (127.0.0.0/8)")
        })?
    };
    ensure_loopback(ip)?;
    Ok(SocketAddr::from((ip, port)))
}

/// Refuses every address outside 127.0.0.0/8.
pub fn ensure_loopback(ip: Ipv4Addr) -> anyhow::Result<()> {
    if !ip.is_loopback() {
        bail!("refusing {ip}: the load generator only targets loopback (127.0.0.0/8)");
    }
    Ok(())
}

/// Hands out distinct source addresses in 127.1.0.1 – 127.254.255.254, starting at a
/// random offset so that runs against the same server do not share per-IP rate-limit
/// buckets. Linux routes all of 127.0.0.0/8 to the loopback interface.
#[derive(Debug, Clone, Copy)]
pub struct SourceIps {
    base: u32,
}

/// Usable host addresses per /24 (x.y.1 – x.y.254).
const PER_24: u32 = 254;
/// How many distinct source addresses the plan can hand out.
const SPACE: u32 = PER_24 * 256 * 254;

impl SourceIps {
    /// A plan starting at a random offset.
    pub fn random() -> Self {
        Self {
            base: rand::random::<u32>() % SPACE,
        }
    }

    /// The `i`-th source address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        let n = (self.base as u64 + i as u64) % u64::from(SPACE);
        let n = n as u32;
        let d = (n % PER_24 + 1) as u8;
        let c = ((n / PER_24) % 256) as u8;
        let b = (n / (PER_24 * 256) + 1) as u8;
        Ipv4Addr::new(127, b, c, d)
    }
}

/// A TCP connection to `addr` leaving from `src`.
pub async fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> anyhow::Result<TcpStream> {
    ensure_loopback(src)?;
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(SocketAddr::from((src, 0)))
        .with_context(|| format!("cannot bind a client socket to {src}"))?;
    let stream = socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr} from {src}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

/// A response, fully read.
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// `Set-Cookie` values.
    pub cookies: Vec<String>,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "status {}: body is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A readable one-line description for error messages.
    pub fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(200).collect();
        format!("HTTP {}: {body}", self.status.as_u16())
    }
}

impl HttpConn {
    /// Opens a connection to `addr` from `src`.
    pub async fn open(src: Ipv4Addr, addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = connect_from(src, addr).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake failed")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Bytes>,
    ) -> anyhow::Result<Reply> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        if body.is_some() {
            builder = builder.header("content-type", "application/json");
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder.body(Full::new(body.unwrap_or_default()))?;
        self.sender.ready().await.context("connection closed")?;
        let resp = self
            .sender
            .send_request(req)
            .await
            .with_context(|| format!("{method} {path} failed"))?;
        let status = resp.status();
        let cookies = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the body of {method} {path} failed"))?
            .to_bytes();
        Ok(Reply {
            status,
            cookies,
            body,
        })
    }
}

/// A single request on a fresh connection from `src`.
pub async fn request(
    src: Ipv4Addr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> anyhow::Result<Reply> {
    let mut conn = HttpConn::open(src, addr).await?;
    conn.send(method, path, headers, body).await
}

/// A free TCP port on 127.0.0.1 (bound, then released for a child process to take).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(
            parse_target("http://127.0.0.1:8000").ok(),
            Some(SocketAddr::from(([127, 0, 0, 1], 8000)))
        );
        assert!(parse_target("http://localhost:9/health").is_ok());
        assert!(parse_target("http://127.3.4.5:80").is_ok());
        for bad in [
            "http://10.0.0.1:8000",
            "http://192.168.1.2:80",
            "http://8.8.8.8:53",
            "http://example.com:80",
            "http://[::2]:80",
            "http://127.0.0.1",
        ] {
            assert!(parse_target(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn source_addresses_are_distinct_loopback_hosts() {
        let plan = SourceIps { base: SPACE - 3 };
        let ips: Vec<_> = (0..2000).map(|i| plan.ip(i)).collect();
        let unique: std::collections::HashSet<_> = ips.iter().collect();
        assert_eq!(unique.len(), ips.len());
        for ip in ips {
            let o = ip.octets();
            assert_eq!(o[0], 127);
            assert!(o[1] >= 1 && o[1] <= 254 && o[3] >= 1 && o[3] <= 254, "{ip}");
        }
    }
}
