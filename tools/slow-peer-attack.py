#!/usr/bin/env python3
"""Slow-peer attack against a running telcall, to measure what a peer that never reads costs.

N pairs (attacker A, victim B who never reads) in N calls; each A sends M offers of S bytes
to its B as fast as it can. Prints one JSON line with the server's RSS (from /proc/<pid>)
before, once connected, at the peak and after. Loopback only; every user signs in from its own
127.10.x.y address, so the per-IP sign-in limit holds. The server must accept the message rate
(raise WS_MESSAGES_PER_SECOND and WS_MESSAGE_BURST) and the call creations (raise
RATE_LIMIT_CALLS_PER_MINUTE); see docs/security.md for the command line.

Usage: slow-peer-attack.py HOST PORT SERVER_PID BOT_TOKEN PAIRS MESSAGES SDP_BYTES"""
import base64, hashlib, hmac, json, os, socket, struct, sys, threading, time, urllib.parse

host, port, pid, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
pairs, msgs, size = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])


def rss_kib():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])


def init_data(uid):
    user = json.dumps({"id": uid, "first_name": f"U{uid}"}, separators=(",", ":"))
    pairs_ = {"auth_date": str(int(time.time())), "query_id": "AAH", "user": user}
    dcs = "\n".join(f"{k}={v}" for k, v in sorted(pairs_.items()))
    secret = hmac.new(b"WebAppData", token.encode(), hashlib.sha256).digest()
    pairs_["hash"] = hmac.new(secret, dcs.encode(), hashlib.sha256).hexdigest()
    return urllib.parse.urlencode(pairs_)


def http(src, method, path, body=None, bearer=None):
    s = socket.create_connection((host, port), source_address=(src, 0))
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    if bearer:
        head += f"Authorization: Bearer {bearer}\r\n"
    s.sendall(head.encode() + b"\r\n" + data)
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    s.close()
    head, _, rest = out.partition(b"\r\n\r\n")
    return head.decode(), rest


def sign_in(src, uid):
    head, body = http(src, "POST", "/auth/telegram", {"initData": init_data(uid)})
    assert " 200 " in head.split("\r\n")[0], head
    user_id = json.loads(body)["user"]["id"]
    for line in head.split("\r\n"):
        if line.lower().startswith("set-cookie: access_token="):
            return line.split("=", 1)[1].split(";")[0], user_id
    raise SystemExit("no cookie")


def ws_connect(src, code, jwt):
    s = socket.create_connection((host, port), source_address=(src, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws/calls/{code} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: token.{jwt}\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(1)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    return s


def frame(text):
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def drain(s):
    try:
        while s.recv(65536):
            pass
    except OSError:
        pass


setup = []
for i in range(pairs):
    a_ip, b_ip = f"127.10.{i // 200}.{(i % 200) * 2 + 1}", f"127.10.{i // 200}.{(i % 200) * 2 + 2}"
    a_uid, b_uid = 8_000_000 + 2 * i, 8_000_000 + 2 * i + 1
    (a_jwt, _), (b_jwt, b_uid) = sign_in(a_ip, a_uid), sign_in(b_ip, b_uid)
    head, body = http(a_ip, "POST", "/api/calls", {}, bearer=a_jwt)
    code = json.loads(body)["call_id"]
    setup.append((a_ip, b_ip, b_uid, a_jwt, b_jwt, code))

socks = []
before = rss_kib()
for a_ip, b_ip, b_uid, a_jwt, b_jwt, code in setup:
    b = ws_connect(b_ip, code, b_jwt)  # never read
    b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    a = ws_connect(a_ip, code, a_jwt)
    threading.Thread(target=drain, args=(a,), daemon=True).start()
    socks.append((a, b, b_uid))
connected = rss_kib()

sdp = "v=0 " + "x" * size
peak = connected


def attack(a, b_uid):
    msg = frame(json.dumps({"type": "offer", "to_user_id": b_uid, "payload": {"type": "offer", "sdp": sdp}}))
    for _ in range(msgs):
        try:
            a.sendall(msg)
        except OSError:
            return


threads = [threading.Thread(target=attack, args=(a, u)) for a, _, u in socks]
for t in threads:
    t.start()
deadline = time.time() + 20
while any(t.is_alive() for t in threads) and time.time() < deadline:
    peak = max(peak, rss_kib())
    time.sleep(0.05)
for _ in range(40):
    peak = max(peak, rss_kib())
    time.sleep(0.05)
after = rss_kib()
result = {"pairs": pairs, "messages": msgs, "message_bytes": len(sdp), "rss_before_kib": before,
          "rss_connected_kib": connected, "rss_peak_kib": peak, "rss_after_kib": after,
          "peak_growth_per_attacker_kib": round((peak - connected) / pairs, 1)}
print(json.dumps(result))
